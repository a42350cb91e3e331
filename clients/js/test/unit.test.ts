/** The pure parts, without a server: codec normalisation, id order, backoff, close policy. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encode } from "@msgpack/msgpack";
import { Backoff, closeAction, codecFor, compareIds, DecodeError, maxId } from "../dist/index.js";

test("msgpack: 64-bit ids become exact decimal strings, times become numbers", () => {
  const id = 794354201395212288n; // past 2^53: a number would round it
  const data = encode({ t: "sync", r: 1, cursor: "c", more: false, convs: [{ m: "m1", last_id: id, peer_read: 5 }], msgs: [{ t: "msg", id, ts: 1767225600000n, m: "m1" }] }, { useBigInt64: true });
  const frame = codecFor("rdv.v1.msgpack").decode(data) as unknown as { convs: { last_id: string; peer_read: string }[]; msgs: { id: string; ts: number }[] };
  assert.equal(frame.msgs[0]!.id, "794354201395212288");
  assert.equal(frame.msgs[0]!.ts, 1767225600000);
  assert.equal(frame.convs[0]!.last_id, "794354201395212288");
  assert.equal(frame.convs[0]!.peer_read, "5");
});

test("each codec refuses the other kind of frame", () => {
  assert.throws(() => codecFor("rdv.v1.json").decode(new Uint8Array([0x80])), DecodeError);
  assert.throws(() => codecFor("rdv.v1.msgpack").decode("{}"), DecodeError);
  assert.throws(() => codecFor("rdv.v1.json").decode("[1]"), DecodeError);
  assert.equal(typeof codecFor("rdv.v1.json").encode({ t: "ping" }), "string");
  assert.ok(codecFor(undefined).encode({ t: "ping" }) instanceof Uint8Array); // msgpack by default
});

test("ids compare as numbers", () => {
  assert.ok(compareIds("9", "10") < 0);
  assert.ok(compareIds("794354201399406599", "794354201395212288") > 0);
  assert.equal(compareIds("42", "42"), 0);
  assert.equal(maxId("9", "10"), "10");
  assert.equal(maxId(undefined, "3"), "3");
});

test("full jitter: uniform below min(cap, base * 2^attempt), reset after success", () => {
  const draws = [0.999999, 0.999999, 0.999999, 0.999999, 0.5];
  const b = new Backoff({ baseMs: 100, capMs: 500, random: () => draws.shift() ?? 0 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [99, 199, 399, 499]);
  b.reset();
  assert.equal(b.next(), 50);
  const zero = new Backoff({ random: () => 0 });
  assert.equal(zero.next(), 0); // full jitter may retry at once: that is what spreads a herd
  assert.equal(new Backoff({ random: () => 0.5 }).between(500, 5000), 2750);
});

test("close codes follow the protocol's table", () => {
  assert.deepEqual(closeAction(1012, ""), { kind: "reconnect", window: "restart", newToken: false });
  assert.deepEqual(closeAction(1001, ""), { kind: "reconnect", window: "restart", newToken: false });
  assert.deepEqual(closeAction(4002, "token expired"), { kind: "reconnect", window: "backoff", newToken: true });
  assert.deepEqual(closeAction(4001, ""), { kind: "reconnect", window: "backoff", newToken: true });
  assert.equal(closeAction(4003, "").kind, "stop");
  assert.equal(closeAction(4008, "max_connections_per_user (10)").kind, "stop");
  assert.deepEqual(closeAction(4008, "rate limit"), { kind: "reconnect", window: "slow", newToken: false });
  for (const code of [1006, 1009, 4009, 1000]) assert.deepEqual(closeAction(code, ""), { kind: "reconnect", window: "backoff", newToken: false });
});
