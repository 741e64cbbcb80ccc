// Sign-in with an OpenID Connect provider ("Sign in with Google"): authorization code with
// PKCE. The page sends the person to the provider with a PKCE S256 challenge, a state and a
// nonce, all remembered in this tab's sessionStorage; the provider sends them back to
// /auth/callback with a code. The callback checks the state (the answer belongs to the
// sign-in this tab started) and hands code, verifier, redirect URI and nonce to the server
// (LoginWithAuthorizationCode), which trades the code at the provider (with its client
// secret, which a page cannot keep) and checks the nonce in the ID token.
import type { OidcProvider } from "@/gen/quickchat/v1/auth_pb";

export const CALLBACK_PATH = "/auth/callback";
const KEY = "quickchat.oidc";

/** What a tab remembers between sending the person to the provider and their return. */
export interface PendingSignIn {
  state: string;
  nonce: string;
  codeVerifier: string;
  redirectUri: string;
  /** Where to go once signed in (a path of this app). */
  next: string;
  /** The provider's name, for messages. */
  providerName: string;
}

/** A sign-in that cannot go on, with the sentence to show. */
export class SignInError extends Error {}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The PKCE S256 challenge of `verifier` (RFC 7636). */
export async function s256(verifier: string): Promise<string> {
  if (!crypto.subtle) {
    throw new SignInError("Signing in with an identity provider needs this page to be served over HTTPS.");
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Where to send the person, and what to remember until they come back. */
export async function authorizationRequest(
  provider: OidcProvider,
  origin: string,
  next: string,
): Promise<{ url: string; pending: PendingSignIn }> {
  if (!provider.authorizationEndpoint) {
    throw new SignInError(`${provider.displayName} cannot be reached right now. Try again in a moment.`);
  }
  const pending: PendingSignIn = {
    state: random(),
    nonce: random(),
    codeVerifier: random(),
    redirectUri: origin + CALLBACK_PATH,
    next,
    providerName: provider.displayName,
  };
  const url = new URL(provider.authorizationEndpoint);
  const params = {
    response_type: "code",
    client_id: provider.clientId,
    redirect_uri: pending.redirectUri,
    scope: "openid email profile",
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await s256(pending.codeVerifier),
    code_challenge_method: "S256",
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return { url: url.toString(), pending };
}

export function remember(pending: PendingSignIn) {
  sessionStorage.setItem(KEY, JSON.stringify(pending));
}

/** The sign-in this tab started, forgotten as it is read: an answer is used once. */
export function takePending(): PendingSignIn | null {
  const raw = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  try {
    return raw ? (JSON.parse(raw) as PendingSignIn) : null;
  } catch {
    return null;
  }
}

export type Callback = { ok: true; code: string; pending: PendingSignIn } | { ok: false; message: string };

/** What the provider's answer on the callback page means, before anything is sent anywhere. */
export function checkCallback(params: URLSearchParams, pending: PendingSignIn | null): Callback {
  if (!pending) {
    return {
      ok: false,
      message: "This sign-in was not started in this browser tab, or it is already finished. Start again.",
    };
  }
  const name = pending.providerName;
  // An answer without the state this tab chose was not asked for here (it may be someone
  // else's code): it is never sent to the server.
  if (params.get("state") !== pending.state) {
    return { ok: false, message: `This answer from ${name} does not belong to the sign-in this tab started. Start again.` };
  }
  const error = params.get("error");
  if (error === "access_denied") return { ok: false, message: `You cancelled the sign-in at ${name}.` };
  if (error) {
    return { ok: false, message: `${name} could not sign you in (${params.get("error_description") || error}).` };
  }
  const code = params.get("code");
  if (!code) return { ok: false, message: `${name} sent no sign-in code. Start again.` };
  return { ok: true, code, pending };
}

/** `raw` if it is a path of this app, else the dashboard. */
export function safeNext(raw: string | null | undefined): string {
  return raw && raw.startsWith("/") && !raw.startsWith("//") ? raw : "/dashboard";
}
