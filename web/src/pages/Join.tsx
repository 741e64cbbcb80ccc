import { useEffect, useMemo, useState, type FormEvent } from "react";
import { useParams } from "react-router";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { Field, FormError } from "@/components/ui/field";
import type { Group } from "@/gen/quickchat/v1/group_pb";
import { anonymous, clients } from "@/lib/api";
import { Code, isCode, problem, type Problem } from "@/lib/errors";
import { forget, membership, remember } from "@/lib/members";
import { getSession, userClients } from "@/lib/session";
import { useSession } from "@/lib/useSession";
import { NotFound } from "./NotFound";
import { Room, type Me } from "./Room";

type View =
  | { kind: "loading" }
  | { kind: "not-found" }
  | { kind: "error"; message: string }
  | { kind: "join"; group: Group; notice?: string }
  | { kind: "room"; group: Group; me: Me; token: "owner" | string };

/** The share link: the join form, or straight into the room for its owner and for anyone
 * who joined before (their member token is remembered per group). */
export function JoinPage() {
  const { groupId = "" } = useParams();
  const session = useSession();
  const signedIn = session !== null;
  const [view, setView] = useState<View>({ kind: "loading" });

  useEffect(() => {
    let cancelled = false;
    const settle = (v: View) => !cancelled && setView(v);
    (async () => {
      let group: Group | undefined;
      try {
        group = (await anonymous.groups.getGroup({ groupId })).group;
      } catch (err) {
        if (isCode(err, Code.NotFound) || isCode(err, Code.InvalidArgument)) {
          forget(groupId);
          return settle({ kind: "not-found" });
        }
        return settle({ kind: "error", message: problem(err).message });
      }
      if (!group) return settle({ kind: "not-found" });
      const member = membership(groupId);
      if (member) return settle({ kind: "room", group, me: { id: member.memberId, name: member.name }, token: member.token });
      const s = getSession();
      if (s) {
        try {
          await userClients.groups.listMembers({ groupId });
          return settle({ kind: "room", group, me: { id: s.user.id, name: s.user.name }, token: "owner" });
        } catch {
          // Not the owner: join like anyone else.
        }
      }
      settle({ kind: "join", group });
    })();
    return () => {
      cancelled = true;
    };
  }, [groupId, signedIn]);

  switch (view.kind) {
    case "loading":
      return <p className="p-8 text-center text-slate-600">Loading…</p>;
    case "not-found":
      return <NotFound what="group" />;
    case "error":
      return <FormError>{view.message}</FormError>;
    case "join":
      return (
        <JoinForm
          group={view.group}
          notice={view.notice}
          onJoined={(me, token) => setView({ kind: "room", group: view.group, me, token })}
        />
      );
    case "room":
      return (
        <RoomWithToken
          group={view.group}
          me={view.me}
          token={view.token}
          onGone={() => {
            forget(groupId);
            setView({ kind: "not-found" });
          }}
          onUnauthorised={() => {
            forget(groupId);
            setView({ kind: "join", group: view.group, notice: "Your membership has expired. Join again." });
          }}
        />
      );
  }
}

function RoomWithToken({
  group,
  me,
  token,
  onGone,
  onUnauthorised,
}: {
  group: Group;
  me: Me;
  token: string;
  onGone: () => void;
  onUnauthorised: () => void;
}) {
  const api = useMemo(() => (token === "owner" ? userClients : clients(() => token)), [token]);
  return <Room group={group} me={me} api={api} onGone={onGone} onUnauthorised={onUnauthorised} />;
}

function JoinForm({ group, notice, onJoined }: { group: Group; notice?: string; onJoined: (me: Me, token: string) => void }) {
  const [error, setError] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const joined = await anonymous.groups.joinGroup({
        groupId: group.id,
        name: String(form.get("name")),
        passcode: String(form.get("passcode")),
      });
      const m = remember(joined);
      onJoined({ id: m.memberId, name: m.name }, m.token);
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };

  const passcodeError =
    error?.fields.passcode ?? (error?.code === Code.PermissionDenied || error?.code === Code.ResourceExhausted ? error.message : undefined);
  const general = error && !passcodeError && !error.fields.name ? error.message : undefined;

  return (
    <section className="mx-auto w-full max-w-sm px-4 py-12">
      <Card>
        <p className="text-sm text-slate-500">You were invited to</p>
        <h1 className="mb-1 text-2xl font-bold break-words">{group.title}</h1>
        <p className="mb-4 text-sm text-slate-500">by {group.ownerName}</p>
        {notice && <p className="mb-4 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-800">{notice}</p>}
        <form className="grid gap-4" onSubmit={submit} noValidate>
          <Field label="Your name" name="name" autoComplete="nickname" required error={error?.fields.name} />
          <Field label="Passcode" name="passcode" type="password" autoComplete="off" required error={passcodeError} />
          <FormError>{general}</FormError>
          <Button type="submit" disabled={busy}>
            Join the chat
          </Button>
        </form>
      </Card>
    </section>
  );
}
