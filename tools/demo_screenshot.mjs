// Drives the /demo page of a running node into the middle of a conversation and saves a
// screenshot: alice's and bob's tabs side by side (two frames of one page), bob typing.
//   node tools/demo_screenshot.mjs HTTP_URL OUT.png      (tools/demo_screenshot.py starts the node)
// playwright-core comes from tests/browser/node_modules (`make browser-deps`), and the
// browser is Debian's chromium.
import { createRequire } from "node:module";

const [url, out] = process.argv.slice(2);
if (!url || !out) throw new Error("usage: node tools/demo_screenshot.mjs HTTP_URL OUT.png");
const require = createRequire(new URL("../tests/browser/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const WAIT_MS = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.RDV_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 2 * 1180 + 30, height: 700 }, deviceScaleFactor: 1 });
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(`${url}/demo/assets/style.css`); // same origin as the frames, for a blank start
  await page.setContent(`<!doctype html><body style="margin:0;display:flex;gap:10px;padding:10px;background:#d9d2cd">
    <iframe id="alice" src="${url}/demo?user=alice" style="width:1180px;height:680px;border:0;border-radius:10px"></iframe>
    <iframe id="bob" src="${url}/demo?user=bob&subprotocol=rdv.v1.msgpack" style="width:1180px;height:680px;border:0;border-radius:10px"></iframe>
  </body>`);
  const alice = page.frameLocator("#alice");
  const bob = page.frameLocator("#bob");
  for (const tab of [alice, bob]) {
    await tab.locator("body[data-ready=true]").waitFor();
    await tab.locator("#signin").click();
    await tab.locator("#state[data-state=open]").waitFor();
  }
  await alice.locator("#target").fill("bob");
  await alice.locator("#like").click();
  await alice.locator("#swipe-result:has-text('You liked bob')").waitFor();
  await bob.locator("#target").fill("alice");
  await bob.locator("#like").click();
  await alice.locator("#matches li[data-peer=bob]").click();
  await alice.locator("#peer-presence[data-online=true]").waitFor();
  const lines = [
    [alice, bob, "Hey Bob! Your hiking photo on the ridge, where was that?"],
    [bob, alice, "Hi Alice :) That's the Tre Cime loop in the Dolomites"],
    [alice, bob, "No way, it's on my list! How long is it?"],
    [bob, alice, "About 10 km, half a day. Coffee first and I'll show you the route?"],
  ];
  for (const [from, to, text] of lines) {
    await from.locator("#text").fill(text);
    await from.locator("#send").click();
    await to.locator(`#messages li.theirs:has-text(${JSON.stringify(text)})`).waitFor();
    await from.locator(`#messages li.mine:has-text(${JSON.stringify(text)}) .receipt[data-receipt=read]`).waitFor();
  }
  await alice.locator("#text").pressSequentially("Sounds perfect. Saturday", { delay: 20 });
  await bob.locator("#typing:has-text('alice is typing')").waitFor();
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
