// The signed-in session, kept in localStorage so it survives reloads. The access token is
// refreshed shortly before it expires (and on demand when a call finds it stale); refresh
// tokens rotate, so concurrent refreshes, in this tab or another, are serialised and a tab
// picks up a session another tab already refreshed instead of spending a used token.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Session as WireSession } from "@/gen/quickchat/v1/auth_pb";
import { anonymous, clients, type Clients } from "./api";

export interface SessionUser {
  id: string;
  name: string;
  email: string;
}

export interface Session {
  accessToken: string;
  /** Milliseconds since the epoch. */
  accessExpiresAt: number;
  refreshToken: string;
  refreshExpiresAt: number;
  user: SessionUser;
}

const KEY = "quickchat.session";
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

type Listener = () => void;
const listeners = new Set<Listener>();
let current: Session | null = read();
let timer: ReturnType<typeof setTimeout> | undefined;
let refreshing: Promise<Session | null> | null = null;

function read(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function set(session: Session | null) {
  current = session;
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
  schedule();
  listeners.forEach((l) => l());
}

export function fromWire(s: WireSession): Session {
  return {
    accessToken: s.accessToken,
    accessExpiresAt: s.accessExpiresAt ? timestampDate(s.accessExpiresAt).getTime() : Date.now() + 60_000,
    refreshToken: s.refreshToken,
    refreshExpiresAt: s.refreshExpiresAt ? timestampDate(s.refreshExpiresAt).getTime() : 0,
    user: { id: s.user?.id ?? "", name: s.user?.name ?? "", email: s.user?.email ?? "" },
  };
}

export function getSession(): Session | null {
  return current;
}

export function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function signedIn(session: WireSession | undefined) {
  if (session) set(fromWire(session));
}

export async function signOut() {
  const s = current;
  set(null);
  if (s) {
    try {
      await anonymous.auth.logout({ refreshToken: s.refreshToken });
    } catch {
      // The local session is gone either way; the refresh token expires by itself.
    }
  }
}

/** Refresh again this long after a refresh failed for a reason other than a refused token. */
const RETRY_MS = 5_000;

function schedule(after?: number) {
  if (timer) clearTimeout(timer);
  timer = undefined;
  if (!current || typeof window === "undefined") return;
  const due = after ?? Math.max(current.accessExpiresAt - REFRESH_MARGIN_MS - Date.now(), 1_000);
  // A failed timed refresh (server down, network gone) tries again instead of leaving the
  // token to expire unrefreshed.
  timer = setTimeout(() => refresh().catch(() => schedule(RETRY_MS)), due);
}

async function withLock<T>(work: () => Promise<T>): Promise<T> {
  if (typeof navigator !== "undefined" && navigator.locks) {
    return navigator.locks.request("quickchat-session-refresh", work);
  }
  return work();
}

/** A fresh session (refreshing it when it is about to expire); null when signed out. */
export async function refresh(): Promise<Session | null> {
  if (refreshing) return refreshing;
  refreshing = withLock(async () => {
    // Another tab may have refreshed (or signed out) while we waited.
    const stored = read();
    if (!stored) {
      set(null);
      return null;
    }
    if (stored.accessExpiresAt - Date.now() > REFRESH_MARGIN_MS) {
      if (stored.accessToken !== current?.accessToken) set(stored);
      return stored;
    }
    try {
      const { session } = await anonymous.auth.refreshSession({ refreshToken: stored.refreshToken });
      if (!session) throw new Error("no session in the answer");
      set(fromWire(session));
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.Unauthenticated) set(null);
      else throw err;
    }
    return current;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** The access token for a call, refreshed first when it is about to expire. */
export async function accessToken(): Promise<string | undefined> {
  if (!current) return undefined;
  if (current.accessExpiresAt - Date.now() > REFRESH_MARGIN_MS / 2) return current.accessToken;
  return (await refresh())?.accessToken;
}

// A reloaded page keeps refreshing the stored session on time, not only when a call finds the
// token stale.
schedule();

/** Clients acting as the signed-in user. */
export const userClients: Clients = clients(accessToken);

if (typeof window !== "undefined") {
  schedule();
  window.addEventListener("storage", (e) => {
    if (e.key === KEY) {
      current = read();
      schedule();
      listeners.forEach((l) => l());
    }
  });
}
