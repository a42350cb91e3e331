// /demo on a node that mints no tokens (a real secret: no development secret in force): the
// page asks for one, and a pasted token signs in over the `auth` frame.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HTTP_URL, WAIT_MS, offlineContext } from "./browser.mjs";

test("without dev tokens the page takes a pasted token", async () => {
  const token = process.env.RDV_TOKEN_DANA;
  assert.ok(token, "RDV_TOKEN_DANA is not set: run through tests/browser/test_browser.py");
  const { context, blocked, failures } = await offlineContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(`${HTTP_URL}/demo`);
  await page.waitForSelector("body[data-ready=true]");
  await page.waitForSelector("#token-field:not([hidden])");
  await page.fill("#user", "dana");
  await page.fill("#token", "not-a-token");
  await page.click("#signin");
  await page.waitForSelector("#login-error:has-text('401 unauthorized')"); // and no socket
  assert.equal(await page.isVisible("#login"), true);
  await page.fill("#token", token);
  await page.click("#signin");
  await page.waitForSelector("#state[data-state=open]");
  assert.equal(await page.textContent("#me"), "dana");
  assert.deepEqual(blocked, []);
  assert.deepEqual(failures, []);
  await context.close();
});
