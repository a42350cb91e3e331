/**
 * What the Node tests share: the node's address and tokens (from tests/client/test_js_sdk.py),
 * clients that are always closed, and waits that fail with a message instead of hanging.
 */
import { after } from "node:test";
import WebSocket from "ws";
import { RendezvousClient, type ClientEvents, type ClientOptions, type WebSocketConstructor } from "../dist/index.js";

/** A variable the pytest harness must set; a clear failure when run on its own. */
export function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through pytest (tests/client/test_js_sdk.py), which starts the node`);
  }
  return value;
}

export const WS_URL = env("RDV_WS_URL");
export const MATCH_AB = env("RDV_MATCH_AB");
export const MATCH_AC = env("RDV_MATCH_AC");
export const TOKENS = {
  alice: env("RDV_TOKEN_ALICE"),
  aliceLater: env("RDV_TOKEN_ALICE_LATER"),
  bob: env("RDV_TOKEN_BOB"),
  carol: env("RDV_TOKEN_CAROL"),
  forged: env("RDV_TOKEN_FORGED"),
};

/** Node 20 has no global WebSocket without a flag: the tests pass the `ws` package's. */
export const NodeWebSocket = WebSocket as unknown as WebSocketConstructor;

const open: RendezvousClient[] = [];
after(async () => {
  await Promise.all(open.map((c) => c.close()));
});

/** A client for `user` (not connected yet), closed when the test file ends. */
export function client(user: keyof typeof TOKENS, options: Partial<ClientOptions> = {}): RendezvousClient {
  const c = new RendezvousClient({ url: WS_URL, token: TOKENS[user], WebSocket: NodeWebSocket, ...options });
  open.push(c);
  return c;
}

/**
 * A connected client whose first sync is done (unless `syncOnConnect: false`); `t.after`
 * closes it at the end of the test (the server allows 10 sockets per user).
 */
export async function connected(
  t: { after: (fn: () => Promise<void>) => void },
  user: keyof typeof TOKENS,
  options: Partial<ClientOptions> = {},
): Promise<RendezvousClient> {
  const c = client(user, options);
  t.after(() => c.close());
  const synced = options.syncOnConnect === false ? undefined : c.next("synced");
  await within(Promise.all([c.connect(), synced]), 5000, `${user} connecting and syncing`);
  return c;
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next `event` of `c` that satisfies `filter`, within `ms`. */
export function nextEvent<K extends keyof ClientEvents>(
  c: RendezvousClient,
  event: K,
  filter?: (...args: ClientEvents[K]) => boolean,
  ms = 5000,
): Promise<ClientEvents[K]> {
  return within(c.next(event, filter), ms, `event "${String(event)}"`);
}

/** Every `event` of `c` from now on, for counting duplicates. */
export function record<K extends keyof ClientEvents>(c: RendezvousClient, event: K): ClientEvents[K][] {
  const seen: ClientEvents[K][] = [];
  c.on(event, (...args) => seen.push(args));
  return seen;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ask the harness for a server-side event (tests/client/test_js_sdk.py, `Control`). */
export async function control(path: string): Promise<unknown> {
  const response = await fetch(`${env("RDV_CONTROL_URL")}${path}`, { method: "POST" });
  const body: unknown = await response.json();
  if (!response.ok) throw new Error(`control ${path} failed: ${JSON.stringify(body)}`);
  return body;
}

/** The `exp` claim of a JWT, in unix seconds (no verification: the server does that). */
export function jwtExp(token: string): number {
  const payload = token.split(".")[1] ?? "";
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as { exp: number };
  return claims.exp;
}

/** A body no other test sends, to pick a test's own message out of a full sync. */
export function unique(label: string): string {
  return `${label} ${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)} 🙂`;
}
