// The /demo page in a real browser (docs/demo.md): two contexts are two users, alice on
// rdv.v1.json and bob on rdv.v1.msgpack. They like each other, match, see each other online,
// type, chat, get read receipts, go offline and back (sync), and unmatch. Every wait is on
// a condition in the page, never a sleep.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HTTP_URL, WAIT_MS, offlineContext } from "./browser.mjs";

async function signIn(user, subprotocol) {
  const session = await offlineContext();
  const page = await session.context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await openAs(page, user, subprotocol);
  return { ...session, page };
}

async function openAs(page, user, subprotocol) {
  await page.goto(`${HTTP_URL}/demo?user=${user}&subprotocol=${subprotocol}`);
  await page.waitForSelector("body[data-ready=true]");
  await page.click("#signin");
  await page.waitForSelector("#state[data-state=open]");
}

const text = (page, selector) => page.textContent(selector);

test("two users swipe, match, chat with typing, presence and read receipts, then unmatch", async () => {
  const alice = await signIn("alice", "rdv.v1.json");
  const bob = await signIn("bob", "rdv.v1.msgpack");
  assert.equal(await text(alice.page, "#proto"), "rdv.v1.json");
  assert.equal(await text(bob.page, "#proto"), "rdv.v1.msgpack");

  // swipe: alice's like is only a like; bob's like back is the match, for both of them
  await alice.page.fill("#target", "bob");
  await alice.page.click("#like");
  await alice.page.waitForSelector("#swipe-result:has-text('You liked bob')");
  await bob.page.fill("#target", "alice");
  await bob.page.click("#like");
  await bob.page.waitForSelector("#swipe-result:has-text('match with alice')");
  await alice.page.waitForSelector("#matches li[data-peer=bob]"); // the `match` frame
  const matchId = await alice.page.getAttribute("#matches li[data-peer=bob]", "data-match");
  assert.equal(await bob.page.getAttribute("#matches li[data-peer=alice]", "data-match"), matchId);

  // presence: each sees the other online once matched
  await alice.page.click("#matches li[data-peer=bob]");
  await alice.page.waitForSelector("#peer-presence[data-online=true]");
  await bob.page.waitForSelector("#peer-presence[data-online=true]"); // bob's chat opened on the match

  // typing: alice types, bob sees it; sending stops it
  await alice.page.type("#text", "hi bob, coffee?", { delay: 15 });
  await bob.page.waitForSelector("#typing:has-text('alice is typing')");
  await alice.page.click("#send");
  await bob.page.waitForFunction(() => document.getElementById("typing").textContent === "");

  // the message: stored (ack), delivered to bob live, read by bob (his chat is open)
  const mine = "#messages li.mine:has-text('hi bob, coffee?')";
  await alice.page.waitForSelector(mine);
  await bob.page.waitForSelector("#messages li.theirs:has-text('hi bob, coffee?')");
  await alice.page.waitForSelector(`${mine} .receipt[data-receipt=read]`);
  const id = await alice.page.getAttribute(mine, "data-id");
  assert.equal(await bob.page.getAttribute("#messages li.theirs", "data-id"), id);

  // bob answers across the two encodings
  await bob.page.fill("#text", "sure, 5pm?");
  await bob.page.click("#send");
  await alice.page.waitForSelector("#messages li.theirs:has-text('sure, 5pm?')");
  await bob.page.waitForSelector("#messages li.mine:has-text('sure, 5pm?') .receipt[data-receipt=read]");

  // bob leaves: alice sees him offline; she writes; he comes back and `sync` brings it
  await bob.page.goto("about:blank");
  await alice.page.waitForSelector("#peer-presence[data-online=false]");
  await alice.page.fill("#text", "see you there");
  await alice.page.click("#send");
  await alice.page.waitForSelector("#messages li.mine:has-text('see you there') .receipt[data-receipt=sent]");
  await openAs(bob.page, "bob", "rdv.v1.msgpack");
  await alice.page.waitForSelector("#peer-presence[data-online=true]");
  await bob.page.waitForSelector("#matches li[data-peer=alice] .badge:text-is('1')"); // unread, from sync
  await bob.page.click("#matches li[data-peer=alice]");
  await bob.page.waitForSelector("#messages li.theirs:has-text('see you there')");
  await alice.page.waitForSelector("#messages li.mine:has-text('see you there') .receipt[data-receipt=read]");

  // unmatch: both chats close, the match leaves both lists
  await alice.page.click("#unmatch");
  await bob.page.waitForSelector("#closed-note:not([hidden])");
  await alice.page.waitForSelector("#closed-note:not([hidden])");
  assert.equal(await bob.page.isDisabled("#send"), true);
  assert.equal(await bob.page.$("#matches li[data-peer=alice]"), null);
  assert.equal(await alice.page.$("#matches li[data-peer=bob]"), null);
  assert.ok(await bob.page.$("#log li[data-event=unmatch]"), "bob's log shows the unmatch frame");

  for (const user of [alice, bob]) {
    assert.deepEqual(user.blocked, [], "the demo reached for the network");
    assert.deepEqual(user.failures, []);
    await user.context.close();
  }
});
