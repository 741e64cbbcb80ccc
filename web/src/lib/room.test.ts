import { describe, expect, it } from "vitest";
import { initialRoom, oldestOffset, resumePosition, roomReducer, type ChatMessage, type RoomEvent, type RoomState } from "./room";

const msg = (offset: number, extra: Partial<ChatMessage> = {}): ChatMessage => ({
  id: `m${offset}`,
  offset: BigInt(offset),
  senderId: "u1",
  senderName: "Ann",
  body: `message ${offset}`,
  createdAt: 1_700_000_000_000 + offset,
  clientMessageId: "",
  ...extra,
});

const run = (events: RoomEvent[], from: RoomState = initialRoom) => events.reduce(roomReducer, from);
const offsets = (s: RoomState) => s.messages.map((m) => Number(m.offset));
const joined = (offset: number, epoch = "e1", recovered = false): RoomEvent => ({
  type: "joined",
  epoch,
  offset: BigInt(offset),
  recovered,
  online: [{ id: "u1", name: "Ann" }],
});

describe("room state", () => {
  it("merges history and live messages in offset order, once each", () => {
    const s = run([
      joined(3),
      { type: "message", message: msg(4) },
      { type: "history", messages: [msg(3), msg(2), msg(1)], hasMore: false },
      { type: "message", message: msg(5) },
      { type: "history", messages: [msg(3), msg(2)], hasMore: false },
      { type: "message", message: msg(5) },
    ]);
    expect(offsets(s)).toEqual([1, 2, 3, 4, 5]);
    expect(resumePosition(s)).toEqual({ offset: 5n, epoch: "e1" });
  });

  it("resumes after the last offset the stream delivered, not after our own send's answer", () => {
    const s = run([
      joined(10),
      { type: "message", message: msg(11) },
      { type: "sending", clientMessageId: "c1", body: "hi" },
      { type: "sent", message: msg(13, { clientMessageId: "c1" }) },
    ]);
    expect(resumePosition(s)).toEqual({ offset: 11n, epoch: "e1" });
    expect(offsets(s)).toEqual([11, 13]);
    expect(s.pending).toEqual([]);
  });

  it("a recovered reconnect keeps the messages and replays only what was missed", () => {
    const before = run([joined(2), { type: "history", messages: [msg(2), msg(1)], hasMore: false }, { type: "message", message: msg(3) }]);
    const s = run(
      [
        { type: "disconnected" },
        joined(5, "e1", true),
        // Replayed after since = 3; a duplicate of 3 must not double it.
        { type: "message", message: msg(3) },
        { type: "message", message: msg(4) },
        { type: "message", message: msg(5) },
      ],
      before,
    );
    expect(before.connection).toBe("live");
    expect(offsets(s)).toEqual([1, 2, 3, 4, 5]);
    expect(s.connection).toBe("live");
    expect(s.recoveredFromHistory).toBe(false);
  });

  it("shows the reconnecting state while the stream is down", () => {
    const s = run([joined(0), { type: "disconnected" }]);
    expect(s.connection).toBe("reconnecting");
    expect(resumePosition(s)).toEqual({ offset: 0n, epoch: "e1" });
  });

  it("an unrecovered reconnect starts over from history under the new epoch", () => {
    const before = run([joined(2), { type: "history", messages: [msg(2), msg(1)], hasMore: false }]);
    const s = run(
      [{ type: "disconnected" }, joined(7, "e2", false), { type: "history", messages: [msg(7), msg(6)], hasMore: true }],
      before,
    );
    expect(offsets(s)).toEqual([6, 7]);
    expect(s.hasOlder).toBe(true);
    expect(s.recoveredFromHistory).toBe(true);
    expect(resumePosition(s)).toEqual({ offset: 7n, epoch: "e2" });
  });

  it("a join under another epoch is never treated as recovered", () => {
    const before = run([joined(4, "e1"), { type: "history", messages: [msg(4)], hasMore: false }]);
    const s = run([joined(9, "e2", true)], before);
    expect(s.epoch).toBe("e2");
    expect(s.messages).toEqual([]);
  });

  it("dedupes our own message by client message id, whichever arrives first", () => {
    const viaStream = run([
      joined(0),
      { type: "sending", clientMessageId: "c1", body: "hello" },
      { type: "message", message: msg(1, { clientMessageId: "c1" }) },
      { type: "sent", message: msg(1, { clientMessageId: "c1" }) },
    ]);
    const viaAnswer = run([
      joined(0),
      { type: "sending", clientMessageId: "c1", body: "hello" },
      { type: "sent", message: msg(1, { clientMessageId: "c1" }) },
      { type: "message", message: msg(1, { clientMessageId: "c1" }) },
    ]);
    for (const s of [viaStream, viaAnswer]) {
      expect(offsets(s)).toEqual([1]);
      expect(s.pending).toEqual([]);
    }
  });

  it("a retried send stays one pending entry, marked failed until it goes through", () => {
    const s = run([
      joined(0),
      { type: "sending", clientMessageId: "c1", body: "hello" },
      { type: "sendFailed", clientMessageId: "c1" },
    ]);
    expect(s.pending).toEqual([{ clientMessageId: "c1", body: "hello", failed: true }]);
    const retried = run([{ type: "sending", clientMessageId: "c1", body: "hello" }], s);
    expect(retried.pending).toEqual([{ clientMessageId: "c1", body: "hello", failed: false }]);
  });

  it("loads older pages before the oldest message", () => {
    const s = run([joined(60), { type: "history", messages: [msg(60), msg(59)], hasMore: true }]);
    expect(oldestOffset(s)).toBe(59n);
    const older = run([{ type: "older", messages: [msg(58), msg(57)], hasMore: false }], s);
    expect(offsets(older)).toEqual([57, 58, 59, 60]);
    expect(older.hasOlder).toBe(false);
  });

  it("tracks presence and lets typing lapse", () => {
    const s = run([
      joined(0),
      { type: "online", id: "m2", name: "Bob" },
      { type: "typing", id: "m2", name: "Bob", now: 1000 },
    ]);
    expect(s.online).toEqual({ u1: "Ann", m2: "Bob" });
    expect(Object.keys(s.typing)).toEqual(["m2"]);
    expect(run([{ type: "tick", now: 2000 }], s).typing).toHaveProperty("m2");
    expect(run([{ type: "tick", now: 6000 }], s).typing).toEqual({});
    // A message from the typist ends the indicator.
    expect(run([{ type: "message", message: msg(1, { senderId: "m2" }) }], s).typing).toEqual({});
    expect(run([{ type: "offline", id: "m2" }], s).online).toEqual({ u1: "Ann" });
  });
});
