import { useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Button } from "@/components/ui/button";
import type { Group, Member } from "@/gen/quickchat/v1/group_pb";
import type { Clients } from "@/lib/api";
import { useRoom } from "@/lib/useRoom";
import { cn, formatDate, formatTime } from "@/lib/utils";

export interface Me {
  id: string;
  name: string;
}

export function Room({
  group,
  me,
  api,
  onGone,
  onUnauthorised,
}: {
  group: Group;
  me: Me;
  api: Clients;
  onGone: () => void;
  onUnauthorised: () => void;
}) {
  const { state, ended, send, typing, loadOlder } = useRoom(group.id, api);
  const [members, setMembers] = useState<Member[]>([]);
  const [draft, setDraft] = useState("");
  const [sendError, setSendError] = useState<string | null>(null);
  const scroller = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);

  useEffect(() => {
    if (ended === "not-found") onGone();
    if (ended === "unauthorised") onUnauthorised();
  }, [ended, onGone, onUnauthorised]);

  // The member list (with joined dates); refetched when someone we do not know comes online.
  const onlineIds = Object.keys(state.online).sort().join(",");
  const fetchedFor = useRef<string | null>(null);
  useEffect(() => {
    const known = new Set(members.map((m) => m.id));
    if (members.length > 0 && onlineIds.split(",").every((id) => !id || known.has(id))) return;
    if (fetchedFor.current === onlineIds) return;
    fetchedFor.current = onlineIds;
    let cancelled = false;
    api.groups
      .listMembers({ groupId: group.id })
      .then((r) => !cancelled && setMembers(r.members))
      .catch(() => {});
    return () => {
      cancelled = true;
    };
  }, [api, group.id, onlineIds, members]);

  // Follow new messages only while the reader is at the bottom.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [state.messages, state.pending]);

  const submit = async () => {
    const body = draft.trim();
    if (!body) return;
    setDraft("");
    setSendError(null);
    pinned.current = true;
    const error = await send(body);
    if (error) setSendError(error);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    }
  };

  const typists = Object.entries(state.typing)
    .filter(([id]) => id !== me.id)
    .map(([, t]) => t.name);

  return (
    <div className="mx-auto flex h-[calc(100dvh-3.5rem)] w-full max-w-5xl flex-col md:flex-row">
      <aside aria-label="Members" className="border-b border-slate-200 bg-white p-4 md:w-64 md:border-r md:border-b-0">
        <details open>
          <summary className="cursor-pointer text-sm font-semibold text-slate-700">
            Members ({members.length}) · {Object.keys(state.online).length} online
          </summary>
          <ul className="mt-2 grid gap-2" data-testid="members">
            {members.map((m) => {
              const online = m.id in state.online;
              return (
                <li key={m.id} className="flex items-center gap-2 text-sm" data-online={online}>
                  <span
                    className={cn("h-2.5 w-2.5 shrink-0 rounded-full", online ? "bg-green-500" : "bg-slate-300")}
                    aria-hidden
                  />
                  <span className="font-medium">
                    {m.name}
                    {m.id === me.id && " (you)"}
                  </span>
                  <span className="sr-only">{online ? "online" : "offline"}</span>
                  <span className="ml-auto text-xs text-slate-500">
                    joined {m.joinedAt ? formatDate(timestampMs(m.joinedAt)) : ""}
                  </span>
                </li>
              );
            })}
          </ul>
        </details>
      </aside>
      <section className="flex min-h-0 flex-1 flex-col" aria-label="Chat">
        <header className="flex items-center justify-between gap-2 border-b border-slate-200 bg-white px-4 py-3">
          <h1 className="truncate text-lg font-semibold">{group.title}</h1>
          <p role="status" aria-live="polite" className="text-sm" data-testid="connection">
            {state.connection === "live" ? (
              <span className="text-green-700">Connected as {me.name}</span>
            ) : state.connection === "reconnecting" ? (
              <span className="text-amber-700">Reconnecting…</span>
            ) : (
              <span className="text-slate-500">Connecting…</span>
            )}
          </p>
        </header>
        <div
          ref={scroller}
          className="min-h-0 flex-1 overflow-y-auto px-4 py-3"
          onScroll={(e) => {
            const el = e.currentTarget;
            pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          }}
        >
          {state.hasOlder && (
            <div className="mb-3 text-center">
              <Button variant="outline" size="sm" onClick={() => void loadOlder()}>
                Load older messages
              </Button>
            </div>
          )}
          {state.recoveredFromHistory && (
            <p className="mb-3 text-center text-xs text-slate-500">Reconnected; messages reloaded from history.</p>
          )}
          <ol aria-label="Messages" className="grid gap-2" data-testid="messages">
            {state.messages.map((m) => {
              const mine = m.senderId === me.id;
              return (
                <li key={m.id} className={cn("flex", mine ? "justify-end" : "justify-start")} data-offset={String(m.offset)} data-mine={mine}>
                  <div className={cn("max-w-[80%] rounded-2xl px-3 py-2", mine ? "bg-indigo-600 text-white" : "bg-white text-slate-900 shadow-sm")}>
                    <p className={cn("text-xs", mine ? "text-indigo-100" : "text-slate-500")}>
                      {mine ? "You" : m.senderName} · <time dateTime={new Date(m.createdAt).toISOString()}>{formatTime(m.createdAt)}</time>
                    </p>
                    <p className="whitespace-pre-wrap break-words" data-testid="message-body">
                      {m.body}
                    </p>
                  </div>
                </li>
              );
            })}
            {state.pending.map((p) => (
              <li key={p.clientMessageId} className="flex justify-end" data-pending>
                <div className="max-w-[80%] rounded-2xl bg-indigo-300 px-3 py-2 text-white">
                  <p className="text-xs">{p.failed ? "Not sent" : "Sending…"}</p>
                  <p className="whitespace-pre-wrap break-words">{p.body}</p>
                  {p.failed && (
                    <button className="text-xs underline" onClick={() => void send(p.body, p.clientMessageId)}>
                      Retry
                    </button>
                  )}
                </div>
              </li>
            ))}
          </ol>
        </div>
        <p aria-live="polite" className="h-5 px-4 text-xs text-slate-500" data-testid="typing">
          {typists.length > 0 && `${typists.join(", ")} ${typists.length === 1 ? "is" : "are"} typing…`}
        </p>
        {sendError && (
          <p role="alert" className="px-4 text-sm text-red-600">
            {sendError}
          </p>
        )}
        <form
          className="flex gap-2 border-t border-slate-200 bg-white p-3"
          onSubmit={(e) => {
            e.preventDefault();
            void submit();
          }}
        >
          <label htmlFor="composer" className="sr-only">
            Message
          </label>
          <textarea
            id="composer"
            rows={1}
            value={draft}
            placeholder="Message (Enter sends, Shift+Enter: new line)"
            className="min-h-10 flex-1 resize-none rounded-md border border-slate-300 px-3 py-2 text-sm focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500"
            onChange={(e) => {
              setDraft(e.target.value);
              if (e.target.value) typing();
            }}
            onKeyDown={onKeyDown}
          />
          <Button type="submit" disabled={!draft.trim()}>
            Send
          </Button>
        </form>
      </section>
    </div>
  );
}
