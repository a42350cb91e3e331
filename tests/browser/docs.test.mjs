// /docs in a real browser with the network cut (every request off loopback is aborted):
// Swagger UI must render from the node's own assets, show the Authorize button and the
// bearer scheme behind it, and never have tried to reach anything outside.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HTTP_URL, WAIT_MS, offlineContext } from "./browser.mjs";

test("/docs renders offline, with Authorize and the bearer scheme", async () => {
  const { context, blocked, failures } = await offlineContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  await page.goto(`${HTTP_URL}/docs`);
  await page.waitForSelector(".swagger-ui .info .title:has-text('Rendezvous HTTP API')");
  await page.waitForSelector(".swagger-ui .opblock-summary-path:has-text('/v1/swipes')");
  const authorize = page.locator(".swagger-ui .auth-wrapper button.authorize");
  await authorize.waitFor();
  assert.match(await authorize.textContent(), /Authorize/);
  await authorize.click();
  await page.waitForSelector(".swagger-ui .auth-container:has-text('bearerAuth')");
  await page.waitForSelector(".swagger-ui .auth-container:has-text('Bearer')");
  // its own assets and the OpenAPI, all from the node
  assert.ok(requests.some((url) => url.endsWith("/docs/assets/swagger-ui-bundle.js")), requests.join("\n"));
  assert.ok(requests.some((url) => url.endsWith("/openapi.json")), requests.join("\n"));
  assert.deepEqual(blocked, [], "/docs reached for the network");
  assert.deepEqual(failures, []);
  await context.close();
});
