// Keeps a room open: Subscribe (gRPC-web server stream), reconnecting with backoff from the
// last delivered offset; history through ListMessages; sends with a client message id that
// is reused on every retry of that send, so a retry never duplicates it.
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Message } from "@/gen/quickchat/v1/chat_pb";
import type { Clients } from "./api";
import { Code, isCode, problem, unreachable } from "./errors";
import { initialRoom, oldestOffset, resumePosition, roomReducer, type ChatMessage, type RoomState } from "./room";

const PAGE = 50;
const TYPING_EVERY_MS = 2_000;

export function toChatMessage(m: Message): ChatMessage {
  return {
    id: m.id,
    offset: m.offset,
    senderId: m.senderId,
    senderName: m.senderName,
    body: m.body,
    createdAt: m.createdAt ? timestampMs(m.createdAt) : Date.now(),
    clientMessageId: m.clientMessageId,
  };
}

/** Why a room cannot be shown: gone, or our credential no longer opens it. */
export type RoomEnd = "not-found" | "unauthorised" | null;

export function useRoom(groupId: string, api: Clients) {
  const [state, dispatch] = useReducer(roomReducer, initialRoom);
  const [ended, setEnded] = useState<RoomEnd>(null);
  const stateRef = useRef<RoomState>(state);
  stateRef.current = state;
  const lastTyping = useRef(0);

  useEffect(() => {
    const stop = new AbortController();
    let attempt = 0;

    // Each join that is not a recovery starts the room over; a history page that answers
    // after a later restart belongs to the old start and is dropped.
    let starts = 0;
    const loadLatest = async (joinedOffset: bigint, start: number) => {
      for (let attempt = 0; attempt < 5 && start === starts && !stop.signal.aborted; attempt++) {
        try {
          const page = await api.chat.listMessages({ groupId, pageSize: PAGE, beforeOffset: joinedOffset + 1n }, { signal: stop.signal });
          if (start === starts) dispatch({ type: "history", messages: page.messages.map(toChatMessage), hasMore: page.hasMore });
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        }
      }
    };

    const run = async () => {
      while (!stop.signal.aborted) {
        try {
          const since = resumePosition(stateRef.current);
          const stream = api.chat.subscribe({ groupId, since }, { signal: stop.signal });
          for await (const res of stream) {
            const e = res.event;
            switch (e.case) {
              case "joined": {
                attempt = 0;
                const recovered = e.value.recovered && !!since && e.value.epoch === since.epoch;
                dispatch({
                  type: "joined",
                  epoch: e.value.epoch,
                  offset: e.value.offset,
                  recovered,
                  online: e.value.online.map((m) => ({ id: m.id, name: m.name })),
                });
                if (!recovered) void loadLatest(e.value.offset, ++starts);
                break;
              }
              case "message":
                dispatch({ type: "message", message: toChatMessage(e.value) });
                break;
              case "typing":
                if (e.value.member) dispatch({ type: "typing", id: e.value.member.id, name: e.value.member.name, now: Date.now() });
                break;
              case "memberJoined":
                if (e.value.member) dispatch({ type: "online", id: e.value.member.id, name: e.value.member.name });
                break;
              case "memberLeft":
                if (e.value.member) dispatch({ type: "offline", id: e.value.member.id });
                break;
            }
          }
          // The server ended the stream without an error: reconnect.
        } catch (err) {
          if (stop.signal.aborted) return;
          if (isCode(err, Code.NotFound)) return setEnded("not-found");
          if (isCode(err, Code.Unauthenticated) || isCode(err, Code.PermissionDenied)) return setEnded("unauthorised");
        }
        if (stop.signal.aborted) return;
        dispatch({ type: "disconnected" });
        const delay = Math.min(250 * 2 ** attempt, 5_000) * (0.75 + Math.random() / 2);
        attempt++;
        await new Promise((r) => setTimeout(r, delay));
      }
    };
    void run();

    const tick = setInterval(() => dispatch({ type: "tick", now: Date.now() }), 1_000);
    return () => {
      stop.abort();
      clearInterval(tick);
    };
  }, [groupId, api]);

  const send = useCallback(
    async (body: string, clientMessageId: string = crypto.randomUUID()) => {
      dispatch({ type: "sending", clientMessageId, body });
      for (let attempt = 0; ; attempt++) {
        try {
          const { message } = await api.chat.sendMessage({ groupId, clientMessageId, body });
          if (message) dispatch({ type: "sent", message: toChatMessage(message) });
          return null;
        } catch (err) {
          // Unreachable or restarting: the same id again, so the message is sent once.
          if (unreachable(err) && attempt < 10) {
            await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 4_000)));
            continue;
          }
          dispatch({ type: "sendFailed", clientMessageId });
          if (isCode(err, Code.NotFound)) setEnded("not-found");
          return problem(err).message;
        }
      }
    },
    [groupId, api],
  );

  const typing = useCallback(() => {
    const now = Date.now();
    if (now - lastTyping.current < TYPING_EVERY_MS) return;
    lastTyping.current = now;
    void api.chat.sendTyping({ groupId }).catch(() => {});
  }, [groupId, api]);

  const loadOlder = useCallback(async () => {
    const before = oldestOffset(stateRef.current);
    if (before === undefined) return;
    const page = await api.chat.listMessages({ groupId, pageSize: PAGE, beforeOffset: before });
    dispatch({ type: "older", messages: page.messages.map(toChatMessage), hasMore: page.hasMore });
  }, [groupId, api]);

  return { state, ended, send, typing, loadOlder };
}
