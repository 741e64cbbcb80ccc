import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { OidcProviderSchema } from "@/gen/quickchat/v1/auth_pb";
import { authorizationRequest, checkCallback, s256, safeNext, type PendingSignIn } from "./oidc";

const pending: PendingSignIn = {
  state: "state-1",
  nonce: "nonce-1",
  codeVerifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
  redirectUri: "https://chat.example.com/auth/callback",
  next: "/dashboard",
  providerName: "Google",
};
const answer = (query: string) => checkCallback(new URLSearchParams(query), pending);

describe("sign-in with an identity provider", () => {
  it("computes the PKCE S256 challenge of RFC 7636's example", async () => {
    expect(await s256(pending.codeVerifier)).toBe("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  });

  it("sends the person to the provider with a fresh state, nonce and S256 challenge", async () => {
    const provider = create(OidcProviderSchema, {
      issuer: "https://accounts.google.com",
      clientId: "client-1",
      displayName: "Google",
      authorizationEndpoint: "https://accounts.google.com/o/oauth2/v2/auth?prompt=select_account",
    });
    const first = await authorizationRequest(provider, "https://chat.example.com", "/join/g1");
    const second = await authorizationRequest(provider, "https://chat.example.com", "/join/g1");
    const url = new URL(first.url);
    expect(url.origin + url.pathname).toBe("https://accounts.google.com/o/oauth2/v2/auth");
    expect(Object.fromEntries(url.searchParams)).toEqual({
      prompt: "select_account",
      response_type: "code",
      client_id: "client-1",
      redirect_uri: "https://chat.example.com/auth/callback",
      scope: "openid email profile",
      state: first.pending.state,
      nonce: first.pending.nonce,
      code_challenge: await s256(first.pending.codeVerifier),
      code_challenge_method: "S256",
    });
    expect(first.pending.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.pending.next).toBe("/join/g1");
    for (const k of ["state", "nonce", "codeVerifier"] as const) expect(second.pending[k]).not.toBe(first.pending[k]);
  });

  it("says so when the provider's address is unknown", async () => {
    const provider = create(OidcProviderSchema, { displayName: "Google", clientId: "c" });
    await expect(authorizationRequest(provider, "https://chat.example.com", "/")).rejects.toThrow(
      "Google cannot be reached right now.",
    );
  });

  it("takes a code only with the state this tab chose", () => {
    expect(answer("code=c1&state=state-1")).toEqual({ ok: true, code: "c1", pending });
    expect(answer("code=c1&state=someone-elses")).toEqual({
      ok: false,
      message: "This answer from Google does not belong to the sign-in this tab started. Start again.",
    });
    expect(answer("code=c1")).toMatchObject({ ok: false });
    expect(checkCallback(new URLSearchParams("code=c1&state=state-1"), null)).toEqual({
      ok: false,
      message: "This sign-in was not started in this browser tab, or it is already finished. Start again.",
    });
  });

  it("explains the provider's refusals", () => {
    expect(answer("error=access_denied&state=state-1")).toEqual({ ok: false, message: "You cancelled the sign-in at Google." });
    expect(answer("error=server_error&error_description=Try+later&state=state-1")).toEqual({
      ok: false,
      message: "Google could not sign you in (Try later).",
    });
    expect(answer("state=state-1")).toEqual({ ok: false, message: "Google sent no sign-in code. Start again." });
  });

  it("only goes on to pages of this app", () => {
    expect(safeNext("/join/g1")).toBe("/join/g1");
    expect(safeNext("//evil.example/x")).toBe("/dashboard");
    expect(safeNext("https://evil.example")).toBe("/dashboard");
    expect(safeNext(null)).toBe("/dashboard");
  });
});
