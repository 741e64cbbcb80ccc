// The browser app end to end, in Chromium (Debian's, driven by playwright-core): two people
// in two browser contexts, a real server on its own temporary data directory.
//
//   node e2e/scenario.mjs            (scripts/web.sh e2e builds everything first)
//
// QUICKCHAT_SERVER_BIN: the server binary (default ../target/debug/quickchat-server);
// CHROMIUM: the browser (default /usr/bin/chromium). Screenshots of every page go to
// test-results/e2e/.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { check, launchChromium, screenshots, startServer, TIMEOUT } from "./support.mjs";

const dataDir = mkdtempSync(path.join(tmpdir(), "quickchat-e2e-"));
const { dir: out, shot } = screenshots("e2e");

/** The server on `listen`; access tokens live 63 s and the app refreshes them a minute
 * before they expire: A's session is refreshed every few seconds throughout, across reloads
 * and the restart. */
const serve = (listen) =>
  startServer(["--listen", listen, "--data-dir", dataDir, "--access-token-ttl-secs", "63", "--admin-email", "alice@example.com"]);
let server;

/** The messages a page shows: [offset, body] in display order. */
async function messages(page) {
  return page.locator('[data-testid="messages"] > li[data-offset]').evaluateAll((items) =>
    items.map((li) => [Number(li.dataset.offset), li.querySelector('[data-testid="message-body"]').textContent]),
  );
}

/** Waits until `page` shows exactly `bodies`, in order, at consecutive offsets 1..n. */
async function expectExactly(page, bodies, who) {
  const deadline = Date.now() + TIMEOUT;
  let seen = [];
  while (Date.now() < deadline) {
    seen = await messages(page);
    const ok =
      seen.length === bodies.length &&
      seen.every(([offset, body], i) => offset === i + 1 && body === bodies[i]) &&
      (await page.locator("[data-pending]").count()) === 0;
    if (ok) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`${who} shows ${JSON.stringify(seen)}, expected ${JSON.stringify(bodies)} at offsets 1..${bodies.length}`);
}

async function expectOnline(page, name) {
  await page.locator(`[data-testid="members"] li[data-online="true"]`, { hasText: name }).waitFor({ timeout: TIMEOUT });
}

const browser = await launchChromium();
let pageA;
let pageB;
try {
  server = await serve("127.0.0.1:0");
  const base = server.url;
  const port = new URL(base).port;
  console.log(`e2e: server at ${base}, data in ${dataDir}`);

  const contextA = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  await contextA.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  // B is on a phone-width screen.
  const contextB = await browser.newContext({ viewport: { width: 390, height: 760 } });
  contextA.setDefaultTimeout(TIMEOUT);
  contextB.setDefaultTimeout(TIMEOUT);
  pageA = await contextA.newPage();
  pageB = await contextB.newPage();

  // A signs up from the landing page.
  await pageA.goto(base);
  await pageA.getByRole("heading", { name: /group chat you share/i }).waitFor();
  await shot(pageA, "landing");
  const optionsAnswered = pageA.waitForResponse((r) => r.url().endsWith("/quickchat.v1.AuthService/GetSignInOptions"));
  await pageA.getByRole("link", { name: "Get started" }).click();
  await pageA.getByLabel("Name").fill("Alice");
  // A is also the operator (--admin-email).
  await pageA.getByLabel("Email").fill("alice@example.com");
  await pageA.getByLabel("Password").fill("correct horse battery");
  await shot(pageA, "sign-up");
  // This server has no identity provider: email + password only (e2e/oidc.mjs has one).
  await optionsAnswered;
  check((await pageA.getByRole("button", { name: /^Sign in with/ }).count()) === 0, "no identity provider is offered");
  await pageA.getByRole("button", { name: "Sign up" }).click();
  await pageA.getByRole("heading", { name: "Your groups" }).waitFor();
  const session = () => pageA.evaluate(() => JSON.parse(localStorage.getItem("quickchat.session") ?? "null"));
  const firstSession = await session();
  check(firstSession?.user?.name === "Alice", "A's session is stored");

  // Creates a group; the server's validation message shows next to the field.
  await pageA.getByRole("button", { name: "Create group" }).click();
  const dialog = pageA.getByRole("dialog");
  await dialog.getByLabel("Title").fill("abc");
  await dialog.getByLabel("Passcode").fill("s3cret");
  await dialog.getByRole("button", { name: "Create" }).click();
  await dialog.getByText("Chat title must be at least 4 characters long.").waitFor();
  await shot(pageA, "create-dialog-validation");
  await dialog.getByLabel("Title").fill("Book club");
  await dialog.getByRole("button", { name: "Create" }).click();
  const card = pageA.getByRole("listitem").filter({ has: pageA.getByRole("heading", { name: "Book club" }) });
  await card.waitFor();
  // The session survives a reload.
  await pageA.reload();
  await card.waitFor();
  await shot(pageA, "dashboard");

  // Copies the link.
  await card.getByRole("button", { name: "Copy link" }).click();
  const link = await pageA.evaluate(() => navigator.clipboard.readText());
  check(/^http:\/\/127\.0\.0\.1:\d+\/join\/[0-9a-f-]{36}$/.test(link), `copied link: ${link}`);
  console.log(`e2e: share link ${link}`);

  // B opens it, fails once with a wrong passcode, then joins.
  await pageB.goto(link);
  await pageB.getByRole("heading", { name: "Book club" }).waitFor();
  await pageB.getByLabel("Your name").fill("Bob");
  await pageB.getByLabel("Passcode").fill("wrong-one");
  await pageB.getByRole("button", { name: "Join the chat" }).click();
  await pageB.getByText("Wrong passcode.").waitFor();
  await shot(pageB, "join-wrong-passcode");
  await pageB.getByLabel("Passcode").fill("s3cret");
  await pageB.getByRole("button", { name: "Join the chat" }).click();
  await pageB.getByText("Connected as Bob").waitFor();

  // A opens the room from the dashboard.
  await card.getByRole("link", { name: "Open room" }).click();
  await pageA.getByText("Connected as Alice").waitFor();

  // Each sees the other online.
  await expectOnline(pageA, "Bob");
  await expectOnline(pageB, "Alice");

  // A types: B sees it; A sends with Enter.
  const composerA = pageA.getByRole("textbox", { name: "Message" });
  const composerB = pageB.getByRole("textbox", { name: "Message" });
  await composerA.pressSequentially("Hello Bob", { delay: 30 });
  await pageB.getByTestId("typing").getByText("Alice is typing…").waitFor();
  await shot(pageB, "room-typing");
  await composerA.press("Enter");
  await expectExactly(pageB, ["Hello Bob"], "B");

  // And back.
  await composerB.pressSequentially("Hi Alice!", { delay: 30 });
  await pageA.getByTestId("typing").getByText("Bob is typing…").waitFor();
  await composerB.press("Enter");
  const conversation = ["Hello Bob", "Hi Alice!"];
  await expectExactly(pageA, conversation, "A");
  await expectExactly(pageB, conversation, "B");
  check((await pageA.locator('li[data-mine="true"]').count()) === 1, "A's own message is styled as A's");
  check((await pageB.locator('li[data-mine="true"]').count()) === 1, "B's own message is styled as B's");
  await shot(pageA, "room-owner");
  await shot(pageB, "room-member-phone");

  // The admin view lists the room with both streams.
  const adminPage = await contextA.newPage();
  await adminPage.goto(`${base}/admin`);
  const row = adminPage.getByRole("table", { name: "Rooms" }).getByRole("row").filter({ hasText: "Book club" });
  await row.getByRole("cell", { name: "2", exact: true }).waitFor();
  // And the nodes (here just this one), with its streams.
  await adminPage.getByRole("table", { name: "Nodes" }).getByText("(this one)").waitFor();
  await shot(adminPage, "admin");
  await adminPage.close();

  // B reloads: straight back in, same identity, history shown.
  await pageB.reload();
  await pageB.getByText("Connected as Bob").waitFor();
  await expectExactly(pageB, conversation, "B after reload");
  check((await pageB.locator('li[data-mine="true"]').count()) === 1, "B is still Bob after a reload");
  await expectOnline(pageA, "Bob");

  // The server restarts; a message sent while it is down goes through once when it is back.
  await server.stop();
  await pageA.getByText("Reconnecting…").waitFor();
  await pageB.getByText("Reconnecting…").waitFor();
  await shot(pageA, "room-reconnecting");
  await composerA.fill("Sent while the server was down");
  await composerA.press("Enter");
  await pageA.locator("[data-pending]").waitFor();
  server = await serve(`127.0.0.1:${port}`);
  await pageA.getByText("Connected as Alice").waitFor();
  await pageB.getByText("Connected as Bob").waitFor();
  conversation.push("Sent while the server was down");
  await expectExactly(pageA, conversation, "A after the restart");
  await expectExactly(pageB, conversation, "B after the restart");
  await composerB.fill("Back again");
  await composerB.press("Enter");
  conversation.push("Back again");
  await expectExactly(pageA, conversation, "A after the restart");
  await expectExactly(pageB, conversation, "B after the restart");
  await shot(pageB, "room-after-restart");

  // A deletes the group; B's room becomes "not found".
  await pageA.getByRole("link", { name: "Dashboard" }).click();
  await card.getByRole("button", { name: "Delete" }).click();
  await shot(pageA, "delete-confirmation");
  await pageA.getByRole("alertdialog").getByRole("button", { name: "Delete group" }).click();
  await pageA.getByText('"Book club" was deleted.').waitFor();
  await pageB.getByRole("heading", { name: "Not found" }).waitFor();
  await shot(pageB, "not-found");
  // And the link itself says so too.
  await pageB.reload();
  await pageB.getByRole("heading", { name: "Not found" }).waitFor();

  // A's session was refreshed along the way (the refresh token rotated) and still works.
  const lastSession = await session();
  check(
    lastSession && lastSession.refreshToken !== firstSession.refreshToken && lastSession.accessExpiresAt > firstSession.accessExpiresAt,
    "A's session was refreshed",
  );
  await pageA.reload();
  await pageA.getByRole("heading", { name: "Your groups" }).waitFor();

  // A signs out; the session is gone after a reload.
  await pageA.getByRole("button", { name: "Sign out" }).click();
  await pageA.reload();
  await pageA.getByRole("link", { name: "Sign in" }).waitFor();

  console.log(`e2e: passed; screenshots in ${out}`);
} catch (err) {
  console.error(`e2e: FAILED: ${err.stack ?? err}`);
  for (const [name, page] of [["A", pageA], ["B", pageB]]) {
    if (page) await page.screenshot({ path: path.join(out, `failure-${name}.png`), fullPage: true }).catch(() => {});
  }
  console.error(`server log:\n${server?.log().slice(-4000)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
