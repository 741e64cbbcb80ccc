// What the end-to-end scenarios share: the server process, Chromium, screenshots.
//
// QUICKCHAT_SERVER_BIN: the server binary (default ../target/debug/quickchat-server);
// CHROMIUM: the browser (default /usr/bin/chromium).
import { spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = process.env.QUICKCHAT_SERVER_BIN ?? path.resolve(web, "../target/debug/quickchat-server");

export const TIMEOUT = 15_000;

/**
 * Starts the server with `args` (the built app is served from web/dist); resolves once its
 * startup line names its address, with `url`, `log()` (everything it printed) and `stop()`.
 */
export function startServer(args) {
  let log = "";
  const child = spawn(bin, ["--web-dir", path.join(web, "dist"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.removeAllListeners("exit");
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server printed no startup line:\n${log}`)), 60_000);
    child.stderr.on("data", (d) => (log += d));
    child.stdout.on("data", (d) => {
      log += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(String(d));
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], log: () => log, stop });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${log}`));
    });
  });
}

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
}

/** A fresh screenshot directory under test-results/; `shot(page, name)` numbers them in order. */
export function screenshots(name) {
  const dir = path.join(web, "test-results", name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let step = 0;
  const shot = async (page, what) => {
    step++;
    await page.screenshot({ path: path.join(dir, `${String(step).padStart(2, "0")}-${what}.png`), fullPage: true });
  };
  return { dir, shot };
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}
