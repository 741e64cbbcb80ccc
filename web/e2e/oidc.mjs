// "Sign in with …" end to end, in Chromium: a server configured with an OpenID Connect
// provider (e2e/oidc-provider.mjs, local, strict like Google: PKCE S256 and a client secret at
// the token endpoint), a person who signs in through it and lands on the dashboard, and the
// ways it can go wrong shown on the callback page.
//
//   node e2e/oidc.mjs            (scripts/web.sh e2e builds everything first)
//
// Screenshots go to test-results/e2e/oidc/.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startProvider } from "./oidc-provider.mjs";
import { check, launchChromium, screenshots, startServer, TIMEOUT } from "./support.mjs";

const CLIENT_ID = "quickchat-e2e";
// With characters HTTP Basic needs form-encoded.
const CLIENT_SECRET = "e2e secret/with:odd+chars";
const user = { sub: "e2e-1001", name: "Ada Lovelace", email: "ada@example.com" };

const dataDir = mkdtempSync(path.join(tmpdir(), "quickchat-e2e-oidc-"));
const { dir: out, shot } = screenshots(path.join("e2e", "oidc"));
const provider = await startProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, user });
const browser = await launchChromium();
let server;
let page;
try {
  server = await startServer([
    "--listen", "127.0.0.1:0",
    "--data-dir", dataDir,
    "--oidc-issuer", provider.issuer,
    "--oidc-client-id", CLIENT_ID,
    "--oidc-client-secret", CLIENT_SECRET,
    "--oidc-provider", "example",
    "--oidc-display-name", "Example ID",
  ]);
  const base = server.url;
  provider.register(`${base}/auth/callback`);
  console.log(`e2e oidc: server at ${base}, provider at ${provider.issuer}`);

  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  context.setDefaultTimeout(TIMEOUT);
  page = await context.newPage();
  const withProvider = () => page.getByRole("button", { name: "Sign in with Example ID" });
  const callbackError = (message) => page.getByRole("alert").getByText(message, { exact: true });

  // The person cancels at the provider: the callback page says so and leads back.
  await page.goto(`${base}/sign-in`);
  await withProvider().click();
  await page.waitForURL(`${provider.issuer}/authorize?**`);
  await page.getByRole("button", { name: "Cancel" }).click();
  await callbackError("You cancelled the sign-in at Example ID.").waitFor();
  await shot(page, "callback-cancelled");
  check(provider.seen.tokenRequests === 0, "a cancelled sign-in reaches no token endpoint");
  await page.getByRole("link", { name: "Back to sign in" }).click();

  // An answer this tab did not ask for (someone else's code, a forged state) is never sent
  // to the server.
  await withProvider().click();
  await page.waitForURL(`${provider.issuer}/authorize?**`);
  await page.goto(`${base}/auth/callback?code=stolen-code&state=forged-state`);
  await callbackError("This answer from Example ID does not belong to the sign-in this tab started. Start again.").waitFor();
  await shot(page, "callback-forged-state");
  check(provider.seen.tokenRequests === 0, "a forged answer reaches no token endpoint");

  // The provider refuses the code (as an expired one): the server's message is shown.
  provider.refuseNextCode();
  await page.goto(`${base}/sign-up`);
  await withProvider().click();
  await page.getByRole("button", { name: "Continue as Ada Lovelace" }).click();
  await callbackError("The sign-in code was not accepted (it may have expired or been used already). Sign in again.").waitFor();
  await shot(page, "callback-code-refused");
  check(JSON.stringify(provider.seen.tokenRefusals) === '["invalid_grant"]', `refusals: ${provider.seen.tokenRefusals}`);

  // And the sign-in that works: from a share link's "sign in first" to the dashboard.
  await page.goto(`${base}/sign-in?next=/dashboard`);
  await shot(page, "sign-in-with-provider");
  await withProvider().click();
  await page.waitForURL(`${provider.issuer}/authorize?**`);
  const authorize = new URL(page.url());
  check(authorize.searchParams.get("code_challenge_method") === "S256", "PKCE S256");
  check(authorize.searchParams.get("redirect_uri") === `${base}/auth/callback`, "the app's own callback");
  await shot(page, "provider-consent");
  await page.getByRole("button", { name: "Continue as Ada Lovelace" }).click();
  await page.getByRole("heading", { name: "Your groups" }).waitFor();
  check(new URL(page.url()).pathname === "/dashboard", `landed on ${page.url()}`);
  await page.getByTestId("signed-in-as").getByText("Ada Lovelace").waitFor();
  await shot(page, "dashboard-signed-in-with-provider");
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem("quickchat.session") ?? "null"));
  check(session?.user?.name === "Ada Lovelace" && session?.user?.email === "ada@example.com", "the session is stored");
  check(provider.seen.tokenRequests === 2, `token requests: ${provider.seen.tokenRequests}`);
  // The code is gone from the history: back does not replay it.
  check(!(await page.evaluate(() => location.search.includes("code="))), "no code in the address bar");

  // Signed in like any password user: the session survives a reload, and the account can
  // create a group.
  await page.reload();
  await page.getByRole("heading", { name: "Your groups" }).waitFor();
  await page.getByRole("button", { name: "Create group" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Title").fill("Analytical engines");
  await dialog.getByLabel("Passcode").fill("bernoulli");
  await dialog.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "Analytical engines" }).waitFor();

  console.log(`e2e oidc: passed; screenshots in ${out}`);
} catch (err) {
  console.error(`e2e oidc: FAILED: ${err.stack ?? err}`);
  if (page) await page.screenshot({ path: path.join(out, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`server log:\n${server?.log().slice(-4000)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  await server?.stop();
  await provider.close();
  rmSync(dataDir, { recursive: true, force: true });
}
