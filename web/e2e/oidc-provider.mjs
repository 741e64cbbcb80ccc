// A tiny OpenID Connect provider for the browser scenario (e2e/oidc.mjs), strict where a real
// one is: discovery, JWKS (an RSA key made at start, RS256 with node:crypto), an authorization
// endpoint that shows a consent page ("Continue as …" or "Cancel") and sends the browser back
// to a registered redirect URI with a code and the state, and a token endpoint that takes a
// code once, for the same redirect URI, with the PKCE S256 verifier and the client's secret
// in HTTP Basic (as Google's web clients need), and answers with a signed ID token carrying
// the nonce of the authorization request.
import { createHash, createSign, generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Starts the provider on a free port; `user` is who signs in at it. */
export async function startProvider({ clientId, clientSecret, user }) {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = "e2e-key-1";
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, use: "sig", alg: "RS256" };
  const redirectUris = new Set();
  /** Authorization requests waiting for the person's decision, and codes not yet traded. */
  const requests = new Map();
  const codes = new Map();
  const seen = { tokenRequests: 0, tokenRefusals: [] };
  let refuseNextCode = false;
  let issuer;

  const idToken = (claims) => {
    const input = `${b64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid }))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${createSign("RSA-SHA256").update(input).sign(privateKey).toString("base64url")}`;
  };

  const send = (res, status, body, type = "application/json") => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(type === "application/json" ? JSON.stringify(body) : body);
  };
  const redirect = (res, to) => {
    res.writeHead(302, { location: to });
    res.end();
  };
  const body = (req) =>
    new Promise((resolve) => {
      let data = "";
      req.on("data", (d) => (data += d));
      req.on("end", () => resolve(new URLSearchParams(data)));
    });
  const refuse = (res, status, error) => {
    seen.tokenRefusals.push(error);
    send(res, status, { error });
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, issuer);
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      return send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ["code"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["client_secret_basic"],
      });
    }
    if (req.method === "GET" && url.pathname === "/jwks") return send(res, 200, { keys: [jwk] });
    if (req.method === "GET" && url.pathname === "/authorize") {
      const p = Object.fromEntries(url.searchParams);
      // Like a real provider: a bad request is shown here, never sent to an unknown address.
      const problems = [
        p.client_id !== clientId && "unknown client_id",
        !redirectUris.has(p.redirect_uri) && `redirect_uri ${p.redirect_uri} is not registered`,
        p.response_type !== "code" && "response_type must be code",
        !(p.scope ?? "").split(" ").includes("openid") && "scope must include openid",
        (p.code_challenge_method !== "S256" || !p.code_challenge) && "PKCE S256 is required",
        !p.state && "state is required",
        !p.nonce && "nonce is required",
      ].filter(Boolean);
      if (problems.length) return send(res, 400, `<h1>Bad request</h1><p>${escape(problems.join("; "))}</p>`, "text/html");
      const id = b64url(randomBytes(16));
      requests.set(id, p);
      return send(
        res,
        200,
        `<!doctype html><title>Example ID</title><h1>Example ID</h1>
<p>${escape(clientId)} wants to know who you are.</p>
<form method="post" action="/authorize/decision">
  <input type="hidden" name="request" value="${id}">
  <button name="decision" value="approve">Continue as ${escape(user.name)}</button>
  <button name="decision" value="deny">Cancel</button>
</form>`,
        "text/html",
      );
    }
    if (req.method === "POST" && url.pathname === "/authorize/decision") {
      const form = await body(req);
      const p = requests.get(form.get("request"));
      requests.delete(form.get("request"));
      if (!p) return send(res, 400, "<h1>Unknown request</h1>", "text/html");
      const back = new URL(p.redirect_uri);
      back.searchParams.set("state", p.state);
      if (form.get("decision") !== "approve") {
        back.searchParams.set("error", "access_denied");
        return redirect(res, back.toString());
      }
      const code = b64url(randomBytes(24));
      codes.set(code, p);
      back.searchParams.set("code", code);
      return redirect(res, back.toString());
    }
    if (req.method === "POST" && url.pathname === "/token") {
      seen.tokenRequests++;
      const form = await body(req);
      const [id, secret] = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64")
        .toString()
        .split(":")
        .map((v) => decodeURIComponent(v.replace(/\+/g, " ")));
      if (id !== clientId || secret !== clientSecret) return refuse(res, 401, "invalid_client");
      const p = codes.get(form.get("code"));
      codes.delete(form.get("code"));
      if (!p || refuseNextCode) {
        refuseNextCode = false;
        return refuse(res, 400, "invalid_grant");
      }
      const challenge = createHash("sha256").update(form.get("code_verifier") ?? "").digest("base64url");
      if (form.get("grant_type") !== "authorization_code" || form.get("redirect_uri") !== p.redirect_uri || challenge !== p.code_challenge) {
        return refuse(res, 400, "invalid_grant");
      }
      const now = Math.floor(Date.now() / 1000);
      return send(res, 200, {
        access_token: b64url(randomBytes(16)),
        token_type: "Bearer",
        expires_in: 3600,
        id_token: idToken({
          iss: issuer,
          aud: clientId,
          sub: user.sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          iat: now,
          exp: now + 600,
          nonce: p.nonce,
        }),
      });
    }
    send(res, 404, { error: "not_found" });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    seen,
    /** Registers a redirect URI, as an operator does in the provider's console. */
    register: (uri) => redirectUris.add(uri),
    /** The next code is refused at the token endpoint, as an expired one would be. */
    refuseNextCode: () => (refuseNextCode = true),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
