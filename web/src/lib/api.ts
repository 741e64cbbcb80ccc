// The API clients: gRPC-web to the server that served this page (same origin), each call
// authorised by the token a `TokenSource` hands out at call time.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AdminService } from "@/gen/quickchat/v1/admin_pb";
import { AuthService } from "@/gen/quickchat/v1/auth_pb";
import { ChatService } from "@/gen/quickchat/v1/chat_pb";
import { GroupService } from "@/gen/quickchat/v1/group_pb";

/** Returns the bearer token for the next call, or undefined for an anonymous call. */
export type TokenSource = () => Promise<string | undefined> | string | undefined;

const baseUrl = typeof window === "undefined" ? "http://127.0.0.1:50051" : window.location.origin;

function bearer(tokens: TokenSource): Interceptor {
  return (next) => async (req) => {
    const token = await tokens();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

function transport(tokens: TokenSource) {
  return createGrpcWebTransport({ baseUrl, interceptors: [bearer(tokens)] });
}

export interface Clients {
  auth: Client<typeof AuthService>;
  groups: Client<typeof GroupService>;
  chat: Client<typeof ChatService>;
  admin: Client<typeof AdminService>;
}

/** Clients whose calls carry the token `tokens` returns. */
export function clients(tokens: TokenSource): Clients {
  const t = transport(tokens);
  return {
    auth: createClient(AuthService, t),
    groups: createClient(GroupService, t),
    chat: createClient(ChatService, t),
    admin: createClient(AdminService, t),
  };
}

/** Clients for calls that need no credentials. */
export const anonymous = clients(() => undefined);
