/**
 * Losing the connection: the server closes the socket (4009, as for a slow reader) or the
 * node restarts (drain: `reconnect`, then 1012). The client comes back by itself, syncs from
 * its cursor and delivers what it missed exactly once; a send made while away goes out after
 * the reconnect with its client id and is stored once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Ack, DisconnectInfo } from "../dist/index.js";
import { connected, control, MATCH_AB, nextEvent, record, sleep, unique } from "./helpers.js";

// random() = 0.999: full jitter at its bound, so the first delay is a known ~1.5 s, long
// enough for bob's message to be stored while alice is away
const FIXED_BACKOFF = { baseMs: 1500, capMs: 5000, random: () => 0.999 };

test("after the server closes the socket: reconnect, sync what was missed, resend", async (t) => {
  const alice = await connected(t, "alice", { reconnect: FIXED_BACKOFF });
  const bob = await connected(t, "bob", { subprotocol: "rdv.v1.json" });
  const cursorBefore = alice.cursor;
  assert.ok(cursorBefore);
  const msgs = record(alice, "msg");

  const away = unique("sent while you were away");
  const queuedBody = unique("typed while offline");
  const queuedC = `offline-${Date.now()}`;
  let bobAck: Promise<Ack> | undefined;
  let queued: Promise<Ack> | undefined;
  const disconnected = new Promise<DisconnectInfo>((resolve) => {
    alice.once("disconnected", (info) => {
      // alice is away now: bob writes, alice's app sends (held until the reconnect)
      bobAck = bob.send(MATCH_AB, { body: away });
      queued = alice.send(MATCH_AB, { body: queuedBody }, { c: queuedC });
      resolve(info);
    });
  });
  const bobGotQueued = nextEvent(bob, "msg", (m) => m.c === queuedC, 10_000);
  const welcomeAgain = nextEvent(alice, "welcome", undefined, 10_000);
  const syncedAgain = nextEvent(alice, "synced", undefined, 10_000);
  assert.deepEqual(await control("/close?user=alice&code=4009"), { closed: 1 });

  const info = await disconnected;
  assert.equal(info.code, 4009);
  assert.equal(info.wasOpen, true);
  assert.ok(info.reconnectInMs >= 1000, `delay ${info.reconnectInMs}`);
  assert.equal(alice.state, "reconnecting");
  assert.deepEqual(alice.pendingSends, [queuedC]);
  const stored = await bobAck!;

  const [welcome] = await welcomeAgain;
  assert.equal(welcome.user, "alice");
  const [synced] = await syncedAgain;
  assert.notEqual(synced.cursor, cursorBefore);
  const missed = msgs.filter(([m]) => m.body === away);
  assert.equal(missed.length, 1);
  assert.equal(missed[0]![0].id, stored.id);
  assert.equal(missed[0]![1], "sync"); // it came through sync, not live

  const ack = await queued!;
  const [delivered] = await bobGotQueued;
  assert.equal(delivered.id, ack.id);
  // no duplicates: another sync and a moment later, still one of each
  await alice.sync();
  await sleep(300);
  assert.equal(msgs.filter(([m]) => m.body === away).length, 1);
  assert.equal(msgs.filter(([m]) => m.c === queuedC).length, 0); // our own: not news to us
  const page = await bob.history(MATCH_AB, { limit: 20 });
  assert.equal(page.msgs.filter((m) => m.c === queuedC).length, 1);
});

test("after a node restart: honours `reconnect`, comes back and syncs", async (t) => {
  const alice = await connected(t, "alice", { reconnect: { baseMs: 200, capMs: 2000 } });
  const msgs = record(alice, "msg");
  const disconnects = record(alice, "disconnected");
  const back = nextEvent(alice, "synced", undefined, 30_000);
  back.catch(() => undefined); // awaited below; a failure before that must not go unhandled

  await control("/restart"); // returns once the new node listens
  const [first] = disconnects[0] ?? assert.fail("no disconnect seen");
  assert.equal(first.code, 1012);
  // the draining node said when to come back (after_ms 300 to 600 in the harness)
  assert.ok(first.reconnectInMs >= 300 && first.reconnectInMs <= 600, `delay ${first.reconnectInMs}`);
  await back;
  assert.equal(alice.state, "open");

  // the new node delivers, live or by sync, exactly once
  const bob = await connected(t, "bob");
  const body = unique("after the restart");
  const got = nextEvent(alice, "msg", (m) => m.body === body, 10_000);
  const ack = await bob.send(MATCH_AB, { body });
  const [msg] = await got;
  assert.equal(msg.id, ack.id);
  await alice.sync();
  assert.equal(msgs.filter(([m]) => m.id === ack.id).length, 1);
});
