/** Connecting: welcome on both subprotocols and both auth modes, refusals, token refresh. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnectionClosedError, RendezvousClient, type Subprotocol } from "../dist/index.js";
import { client, connected, jwtExp, nextEvent, NodeWebSocket, TOKENS, within, WS_URL } from "./helpers.js";

const SUBPROTOCOLS: Subprotocol[] = ["rdv.v1.msgpack", "rdv.v1.json"];

for (const subprotocol of SUBPROTOCOLS) {
  for (const auth of ["frame", "header"] as const) {
    test(`connect + welcome on ${subprotocol}, token in the ${auth}`, async (t) => {
      const alice = client("alice", { subprotocol, auth });
      t.after(() => alice.close());
      const states: string[] = [];
      alice.on("state", (s) => states.push(s));
      const synced = nextEvent(alice, "synced");
      const welcome = await within(alice.connect(), 5000, "welcome");
      assert.equal(welcome.user, "alice");
      assert.equal(alice.user, "alice");
      assert.equal(alice.state, "open");
      assert.deepEqual(states, ["connecting", "open"]);
      assert.ok(welcome.session.length > 0 && welcome.node.length > 0);
      assert.equal(welcome.exp, jwtExp(TOKENS.alice));
      assert.ok(welcome.hb > 0);
      assert.equal(welcome.limits.max_body_chars, 4000);
      await synced;
      await alice.ping();
      await alice.close();
      assert.equal(alice.state, "closed");
    });
  }
}

test("without a global WebSocket (Node 20) the constructor says what to pass", () => {
  const global = globalThis as { WebSocket?: unknown };
  const saved = global.WebSocket;
  delete global.WebSocket;
  try {
    assert.throws(() => new RendezvousClient({ url: WS_URL, token: TOKENS.alice }), /pass one, e\.g\. `WebSocket` from the `ws` package/);
    // header auth needs an implementation that can set headers: a global one cannot
    global.WebSocket = NodeWebSocket;
    assert.throws(
      () => new RendezvousClient({ url: WS_URL, token: TOKENS.alice, auth: "header" }),
      /needs a `WebSocket` option that takes \{ headers \}/,
    );
  } finally {
    if (saved === undefined) delete global.WebSocket;
    else global.WebSocket = saved;
  }
});

for (const auth of ["frame", "header"] as const) {
  test(`a refused token (${auth}) surfaces close 4001 and "unauthorized", and is not retried`, async (t) => {
    const calls: string[] = [];
    // a provider that can only return the same bad token: the client must not loop on it
    const forged = client("alice", {
      auth,
      token: () => {
        calls.push("token");
        return TOKENS.forged;
      },
    });
    t.after(() => forged.close());
    const closed = nextEvent(forged, "closed");
    const error = await within(forged.connect().then(
      () => assert.fail("connected with a forged token"),
      (e: unknown) => e,
    ), 5000, "the refusal");
    assert.ok(error instanceof ConnectionClosedError, String(error));
    assert.equal(error.closeCode, 4001);
    assert.equal(error.errorCode, "unauthorized");
    assert.equal(error.fatal, true);
    const [closedWith] = await closed;
    assert.equal(closedWith?.closeCode, 4001);
    assert.equal(forged.state, "closed");
    assert.deepEqual(calls, ["token", "token"]); // asked once more for a new token, then stopped
  });
}

test("a static refused token rejects connect() at once", async (t) => {
  const forged = client("forged");
  t.after(() => forged.close());
  await assert.rejects(forged.connect(), (e: unknown) => {
    assert.ok(e instanceof ConnectionClosedError);
    assert.equal(e.closeCode, 4001);
    assert.match(e.message, /unauthorized/);
    return true;
  });
});

test("refreshes the token before it expires, from the provider", async (t) => {
  const tokens = [TOKENS.alice, TOKENS.aliceLater];
  const handed: string[] = [];
  // refresh one second after connecting: the lead is the first token's remaining life - 1 s
  const lead = jwtExp(TOKENS.alice) * 1000 - Date.now() - 1000;
  const alice = await connected(t, "alice", {
    token: () => {
      const token = tokens[Math.min(handed.length, tokens.length - 1)]!;
      handed.push(token);
      return token;
    },
    refreshLeadMs: lead,
  });
  assert.equal(alice.welcome?.exp, jwtExp(TOKENS.alice));
  const [exp] = await nextEvent(alice, "tokenRefreshed", undefined, 8000);
  assert.equal(exp, jwtExp(TOKENS.aliceLater));
  assert.deepEqual(handed, [TOKENS.alice, TOKENS.aliceLater]);
  assert.equal(alice.state, "open"); // refreshed in place: no reconnect
  await alice.ping();
});
