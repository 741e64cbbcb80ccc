// A room's state as the browser sees it, as a pure reducer: messages ordered by offset and
// never duplicated (whether they come from history, the live stream, a replay after a
// reconnect, or the answer to our own send), the position to resume from, who is online
// and who is typing. The connection (roomConnection.ts) feeds it events.

export interface ChatMessage {
  id: string;
  offset: bigint;
  senderId: string;
  senderName: string;
  body: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  clientMessageId: string;
}

export interface Pending {
  clientMessageId: string;
  body: string;
  failed: boolean;
}

export type Connection = "connecting" | "live" | "reconnecting";

export interface RoomState {
  /** The epoch `resumeOffset` belongs to ("" before the first join). */
  epoch: string;
  /** Last offset delivered in order on the stream (or the room's offset when it opened):
   * what a reconnect resumes after. Never advanced by our own send's answer, which can
   * arrive before earlier messages have. */
  resumeOffset: bigint;
  /** Oldest first. */
  messages: ChatMessage[];
  /** Our sends not yet answered (or failed), in the order they were sent. */
  pending: Pending[];
  online: Record<string, string>;
  /** Member id → name and when the indicator lapses (ms). */
  typing: Record<string, { name: string; until: number }>;
  hasOlder: boolean;
  connection: Connection;
  /** Set when the server could not replay what we missed: history was reloaded. */
  recoveredFromHistory: boolean;
}

export type RoomEvent =
  | { type: "joined"; epoch: string; offset: bigint; recovered: boolean; online: { id: string; name: string }[] }
  | { type: "message"; message: ChatMessage }
  | { type: "history"; messages: ChatMessage[]; hasMore: boolean }
  | { type: "older"; messages: ChatMessage[]; hasMore: boolean }
  | { type: "sending"; clientMessageId: string; body: string }
  | { type: "sent"; message: ChatMessage }
  | { type: "sendFailed"; clientMessageId: string }
  | { type: "typing"; id: string; name: string; now: number }
  | { type: "online"; id: string; name: string }
  | { type: "offline"; id: string }
  | { type: "disconnected" }
  | { type: "tick"; now: number };

export const TYPING_MS = 4_000;

export const initialRoom: RoomState = {
  epoch: "",
  resumeOffset: 0n,
  messages: [],
  pending: [],
  online: {},
  typing: {},
  hasOlder: false,
  connection: "connecting",
  recoveredFromHistory: false,
};

/** Merges `incoming` into `messages` (oldest first), one message per offset. */
export function merge(messages: ChatMessage[], incoming: ChatMessage[]): ChatMessage[] {
  if (incoming.length === 0) return messages;
  const byOffset = new Map<bigint, ChatMessage>();
  for (const m of messages) byOffset.set(m.offset, m);
  let changed = false;
  for (const m of incoming) {
    if (!byOffset.has(m.offset)) {
      byOffset.set(m.offset, m);
      changed = true;
    }
  }
  if (!changed) return messages;
  return [...byOffset.values()].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
}

function settle(pending: Pending[], arrived: ChatMessage[]): Pending[] {
  const ids = new Set(arrived.map((m) => m.clientMessageId).filter(Boolean));
  if (ids.size === 0) return pending;
  const left = pending.filter((p) => !ids.has(p.clientMessageId));
  return left.length === pending.length ? pending : left;
}

export function roomReducer(state: RoomState, event: RoomEvent): RoomState {
  switch (event.type) {
    case "joined": {
      const online = Object.fromEntries(event.online.map((m) => [m.id, m.name]));
      if (event.recovered && event.epoch === state.epoch) {
        // Everything after resumeOffset follows on this stream.
        return { ...state, online, typing: {}, connection: "live" };
      }
      // A first join, or the server could not replay what we missed (a new epoch, or
      // beyond its window): start over from the room's current offset; history follows.
      return {
        ...state,
        epoch: event.epoch,
        resumeOffset: event.offset,
        messages: [],
        online,
        typing: {},
        hasOlder: false,
        connection: "live",
        recoveredFromHistory: state.epoch !== "",
      };
    }
    case "message": {
      const m = event.message;
      const typing = { ...state.typing };
      delete typing[m.senderId];
      return {
        ...state,
        messages: merge(state.messages, [m]),
        pending: settle(state.pending, [m]),
        resumeOffset: m.offset > state.resumeOffset ? m.offset : state.resumeOffset,
        typing,
      };
    }
    case "history":
      return {
        ...state,
        messages: merge(state.messages, event.messages),
        pending: settle(state.pending, event.messages),
        hasOlder: event.hasMore,
      };
    case "older":
      return { ...state, messages: merge(state.messages, event.messages), hasOlder: event.hasMore };
    case "sending":
      return {
        ...state,
        pending: [
          ...state.pending.filter((p) => p.clientMessageId !== event.clientMessageId),
          { clientMessageId: event.clientMessageId, body: event.body, failed: false },
        ],
      };
    case "sent": {
      // Shown at its offset now; resumeOffset moves only with the stream.
      const messages = state.epoch ? merge(state.messages, [event.message]) : state.messages;
      return { ...state, messages, pending: settle(state.pending, [event.message]) };
    }
    case "sendFailed":
      return {
        ...state,
        pending: state.pending.map((p) =>
          p.clientMessageId === event.clientMessageId ? { ...p, failed: true } : p,
        ),
      };
    case "typing":
      return { ...state, typing: { ...state.typing, [event.id]: { name: event.name, until: event.now + TYPING_MS } } };
    case "online":
      return { ...state, online: { ...state.online, [event.id]: event.name } };
    case "offline": {
      const online = { ...state.online };
      delete online[event.id];
      const typing = { ...state.typing };
      delete typing[event.id];
      return { ...state, online, typing };
    }
    case "disconnected":
      return { ...state, connection: "reconnecting", typing: {} };
    case "tick": {
      const typing = Object.fromEntries(Object.entries(state.typing).filter(([, t]) => t.until > event.now));
      return Object.keys(typing).length === Object.keys(state.typing).length ? state : { ...state, typing };
    }
  }
}

/** Where a reconnect resumes: after the last offset the stream delivered, in its epoch. */
export function resumePosition(state: RoomState): { offset: bigint; epoch: string } | undefined {
  return state.epoch ? { offset: state.resumeOffset, epoch: state.epoch } : undefined;
}

/** The `before_offset` for the next older page. */
export function oldestOffset(state: RoomState): bigint | undefined {
  return state.messages.length ? state.messages[0].offset : undefined;
}
