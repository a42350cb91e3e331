// What the browser tests share: Debian's chromium driven by playwright-core (no browser
// download), contexts that may reach loopback only, and the node's address from the pytest
// harness (tests/browser/test_browser.py).
import { after } from "node:test";
import { chromium } from "playwright-core";

export const HTTP_URL = env("RDV_HTTP_URL");
export const CHROMIUM = process.env.RDV_CHROMIUM || "/usr/bin/chromium";
/** Each wait's limit: generous for a loaded 2-core machine; waits end on conditions. */
export const WAIT_MS = 20_000;

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through pytest (tests/browser/test_browser.py), which starts the node`);
  return value;
}

let browser;
after(async () => {
  await browser?.close();
});

export async function launch() {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // root in CI has no user namespaces for the sandbox; no GPU on the machine
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  return browser;
}

function loopback(url) {
  const { protocol, hostname } = new URL(url);
  if (protocol === "data:" || protocol === "about:" || protocol === "blob:") return true;
  return hostname === "127.0.0.1" || hostname === "localhost" || hostname === "[::1]";
}

/**
 * A browser context (one user: its own storage) in which every request that is not to
 * loopback is aborted, as with the network cut. `blocked` lists what was attempted anyway;
 * `failures` lists page errors and failed loopback requests.
 */
export async function offlineContext(options = {}) {
  const context = await (await launch()).newContext({ viewport: { width: 1280, height: 760 }, ...options });
  const blocked = [];
  const failures = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (loopback(url)) return route.continue();
    blocked.push(url);
    return route.abort("internetdisconnected");
  });
  context.on("weberror", (error) => failures.push(`page error: ${error.error().message}`));
  context.on("requestfailed", (request) => {
    if (loopback(request.url())) failures.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  // WebSockets skip `route`: record them to check they stay on loopback too
  context.on("page", (page) => page.on("websocket", (ws) => { if (!loopback(ws.url())) blocked.push(ws.url()); }));
  return { context, blocked, failures };
}
