/** Chat between two real users: send/ack/msg, idempotent resend, typing, receipts, presence. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { compareIds, ServerError, type Subprotocol } from "../dist/index.js";
import { connected, MATCH_AB, MATCH_AC, nextEvent, record, sleep, unique } from "./helpers.js";

const PAIRS: [Subprotocol, Subprotocol][] = [
  ["rdv.v1.msgpack", "rdv.v1.json"],
  ["rdv.v1.json", "rdv.v1.msgpack"],
];

for (const [mine, theirs] of PAIRS) {
  test(`send, ack and msg: alice on ${mine}, bob on ${theirs}`, async (t) => {
    const alice = await connected(t, "alice", { subprotocol: mine });
    const bob = await connected(t, "bob", { subprotocol: theirs });
    const body = unique("Café tonight?");
    const got = nextEvent(bob, "msg", (msg) => msg.body === body);
    const ack = await alice.send(MATCH_AB, { body });
    assert.equal(ack.t, "ack");
    assert.equal(ack.m, MATCH_AB);
    assert.match(ack.id, /^\d{1,19}$/); // a decimal string in both encodings
    assert.equal(typeof ack.ts, "number");
    const [msg, source] = await got;
    assert.equal(source, "live");
    assert.equal(msg.id, ack.id); // the same id whichever encoding carried it
    assert.equal(msg.from, "alice");
    assert.equal(msg.c, ack.c);
    assert.equal(msg.ts, ack.ts);

    // and back; ids are ordered within the match
    const reply = await bob.send(MATCH_AB, { body: unique("Yes!") });
    assert.ok(compareIds(reply.id, ack.id) > 0);
    const page = await alice.history(MATCH_AB, { limit: 2 });
    assert.deepEqual(page.msgs.map((m) => m.id), [reply.id, ack.id]);
  });
}

test("resending with the same client id gives the same message, stored once", async (t) => {
  const alice = await connected(t, "alice");
  const c = `c-${Date.now()}`;
  const body = unique("only once");
  const first = await alice.send(MATCH_AB, { body }, { c });
  const again = await alice.send(MATCH_AB, { body }, { c });
  assert.equal(again.id, first.id);
  assert.equal(again.ts, first.ts);
  // also from a new connection, as after an app restart
  await alice.close();
  const later = await connected(t, "alice", { subprotocol: "rdv.v1.json" });
  const third = await later.send(MATCH_AB, { body }, { c });
  assert.equal(third.id, first.id);
  const page = await later.history(MATCH_AB, { limit: 20 });
  assert.equal(page.msgs.filter((m) => m.c === c).length, 1);
  // two sends with the same c in flight at once share one promise
  const c2 = `${c}-b`;
  const [x, y] = await Promise.all([later.send(MATCH_AB, { body }, { c: c2 }), later.send(MATCH_AB, { body }, { c: c2 })]);
  assert.equal(x.id, y.id);
});

test("a refused send rejects with the server's error code", async (t) => {
  const alice = await connected(t, "alice");
  await assert.rejects(alice.send("m_not_mine", { body: "hi" }), (e: unknown) => {
    assert.ok(e instanceof ServerError, String(e));
    assert.equal(e.code, "forbidden");
    assert.equal(e.retriable, false);
    return true;
  });
  await assert.rejects(alice.send(MATCH_AB, { body: "x".repeat(4001) }), (e: unknown) => e instanceof ServerError && e.code === "too_large");
  assert.deepEqual(alice.pendingSends, []);
});

test("typing reaches the peer", async (t) => {
  const alice = await connected(t, "alice");
  const bob = await connected(t, "bob", { subprotocol: "rdv.v1.json" });
  const on = nextEvent(bob, "typing", (e) => e.from === "alice" && e.on);
  assert.equal(alice.typing(MATCH_AB, true), true);
  const [event] = await on;
  assert.deepEqual(event, { t: "typing", m: MATCH_AB, from: "alice", on: true });
  const off = nextEvent(bob, "typing", (e) => e.from === "alice" && !e.on);
  alice.typing(MATCH_AB, false);
  await off;
});

test("read and delivered receipts reach the peer", async (t) => {
  const alice = await connected(t, "alice");
  const bob = await connected(t, "bob", { subprotocol: "rdv.v1.json" });
  const ack = await bob.send(MATCH_AB, { body: unique("read me") });
  const delivered = nextEvent(bob, "delivered", (e) => e.id === ack.id);
  await alice.delivered(MATCH_AB, ack.id, { confirm: true }); // waits for the server's ok
  const [d] = await delivered;
  assert.deepEqual(d, { t: "delivered", m: MATCH_AB, from: "alice", id: ack.id });
  const read = nextEvent(bob, "read", (e) => e.id === ack.id);
  await alice.read(MATCH_AB, ack.id); // fire and forget
  const [r] = await read;
  assert.equal(r.from, "alice");
  assert.equal(r.m, MATCH_AB);
});

test("presence of my matches: the query and the events", async (t) => {
  const alice = await connected(t, "alice", { subprotocol: "rdv.v1.json" });
  const bob = await connected(t, "bob");
  void bob;
  const users = await alice.presence();
  const byUser = new Map(users.map((u) => [u.u, u]));
  assert.equal(byUser.get("bob")?.on, true);
  assert.equal(byUser.get("carol")?.on, false);
  assert.deepEqual([...byUser.keys()].sort(), ["bob", "carol"]); // only matches, ever

  const online = nextEvent(alice, "presence", (e) => e.u === "carol" && e.on);
  const carol = await connected(t, "carol");
  await online;
  const offline = nextEvent(alice, "presence", (e) => e.u === "carol" && !e.on);
  await carol.close();
  const [gone] = await offline;
  assert.equal(typeof gone.seen, "number");
  // carol's match with alice is the other one
  assert.notEqual(MATCH_AC, MATCH_AB);
});

test("a listener that throws does not stop delivery", async (t) => {
  const alice = await connected(t, "alice");
  const bob = await connected(t, "bob");
  const thrown: unknown[] = [];
  bob.onListenerError = (error) => thrown.push(error);
  bob.on("msg", () => {
    throw new Error("app bug");
  });
  const msgs = record(bob, "msg");
  const before = msgs.length;
  await alice.send(MATCH_AB, { body: unique("one") });
  await alice.send(MATCH_AB, { body: unique("two") });
  for (let i = 0; i < 50 && msgs.length < before + 2; i++) await sleep(20);
  assert.equal(msgs.length, before + 2);
  assert.ok(thrown.length >= 2);
});

test("unsend: a tombstone in history and an unsent event for the peer", async (t) => {
  const alice = await connected(t, "alice");
  const bob = await connected(t, "bob", { subprotocol: "rdv.v1.json" });
  const body = unique("take it back");
  const got = nextEvent(bob, "msg", (msg) => msg.body === body);
  const ack = await alice.send(MATCH_AB, { body });
  await got;
  const unsent = nextEvent(bob, "unsent", (e) => e.id === ack.id);
  await alice.unsend(MATCH_AB, ack.id);
  const [event] = await unsent;
  assert.deepEqual(event, { t: "unsent", m: MATCH_AB, id: ack.id });
  const page = await bob.history(MATCH_AB, { limit: 5 });
  const stored = page.msgs.find((m) => m.id === ack.id);
  assert.ok(stored);
  assert.equal(stored.deleted, true);
  assert.equal(stored.body, undefined);
  await assert.rejects(bob.unsend(MATCH_AB, ack.id), (e: unknown) => e instanceof ServerError && e.code === "forbidden");
  await assert.rejects(alice.unsend(MATCH_AB, "1"), (e: unknown) => e instanceof ServerError && e.code === "not_found");
});
