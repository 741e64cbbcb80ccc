// Member tokens, one per joined group, so a reload (or the link opened again) goes
// straight back into the room as the same member.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { JoinGroupResponse } from "@/gen/quickchat/v1/group_pb";

export interface Membership {
  groupId: string;
  memberId: string;
  name: string;
  token: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

const key = (groupId: string) => `quickchat.member.${groupId}`;

export function membership(groupId: string): Membership | null {
  try {
    const raw = localStorage.getItem(key(groupId));
    if (!raw) return null;
    const m = JSON.parse(raw) as Membership;
    return m.expiresAt > Date.now() ? m : null;
  } catch {
    return null;
  }
}

export function remember(joined: JoinGroupResponse): Membership {
  const m: Membership = {
    groupId: joined.group?.id ?? joined.member?.groupId ?? "",
    memberId: joined.member?.id ?? "",
    name: joined.member?.name ?? "",
    token: joined.memberToken,
    expiresAt: joined.memberTokenExpiresAt
      ? timestampDate(joined.memberTokenExpiresAt).getTime()
      : Date.now() + 24 * 3600_000,
  };
  localStorage.setItem(key(m.groupId), JSON.stringify(m));
  return m;
}

export function forget(groupId: string) {
  localStorage.removeItem(key(groupId));
}
