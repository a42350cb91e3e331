/**
 * `RendezvousClient`: a chat session that survives the network. It owns the lifecycle that
 * every app otherwise gets subtly wrong:
 * - reconnect after any loss, with the delay the close code asks for (docs/protocol.md) and
 *   full-jitter exponential backoff, then `sync` from the stored cursor;
 * - messages handed to the app once, whether they come live or from `sync`;
 * - `send` keeps its client id `c` until acked and resends it after a reconnect, a timeout or
 *   a retriable error, so the server stores it exactly once;
 * - the token is refreshed before it expires, from a provider the app supplies.
 * One `Connection` (connection.ts) is one socket; this class strings them together.
 */
import { Backoff, type BackoffOptions } from "./backoff.js";
import { CLOSE, closeAction, type CloseAction } from "./close-codes.js";
import { Connection, type AuthMode, type CloseInfo, type WebSocketConstructor } from "./connection.js";
import { TypedEmitter } from "./emitter.js";
import { ConnectionClosedError, NotConnectedError, RendezvousError, ServerError, TimeoutError } from "./errors.js";
import type {
  Ack,
  Content,
  Conversation,
  ErrorFrame,
  Frame,
  HistoryReply,
  MatchEvent,
  MessageId,
  Msg,
  OkReply,
  PresenceEvent,
  PresenceReply,
  PresenceUser,
  ReceiptEvent,
  ReconnectEvent,
  Subprotocol,
  SyncReply,
  TypingEvent,
  UnmatchEvent,
  UnsentEvent,
  Welcome,
} from "./frames.js";
import { compareIds } from "./ids.js";
import { SeenIds } from "./seen.js";

/** Returns a valid token; called before every connect and every refresh. */
export type TokenProvider = () => string | Promise<string>;

export interface ClientOptions {
  /** The gateway URL, e.g. `wss://chat.example.com/v1/ws`. */
  url: string;
  /**
   * A token, or a function returning one. Only a function lets the client refresh before
   * expiry and come back after 4002 (expired) or 4001 (refused) without the app's help.
   */
  token: string | TokenProvider;
  /** Default `rdv.v1.msgpack` (smaller frames); `rdv.v1.json` for debugging. */
  subprotocol?: Subprotocol;
  /**
   * `"frame"` (default) sends the token in an `auth` frame, which works everywhere.
   * `"header"` sends `Authorization: Bearer` on the upgrade (saves a round trip) and needs a
   * `WebSocket` that accepts `{ headers }` as its third argument, like the `ws` package.
   */
  auth?: AuthMode;
  /** The WebSocket implementation; default `globalThis.WebSocket` (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  /** The sync cursor the app stored last time (the `cursor` event), to resume from it. */
  cursor?: string;
  /** `sync` after every (re)connect (default true). */
  syncOnConnect?: boolean;
  /** Reconnect delays: full jitter between 0 and min(cap, base * 2^attempt). */
  reconnect?: BackoffOptions;
  /** Refresh the token this long before it expires (default 60 s). */
  refreshLeadMs?: number;
  /** How long a request waits for its reply (default 10 s). */
  requestTimeoutMs?: number;
  /** How long `send` keeps trying, reconnects included, before it rejects (default 60 s). */
  sendTimeoutMs?: number;
  /** How long one connection attempt may take up to `welcome` (default 10 s). */
  openTimeoutMs?: number;
  /** How many delivered message ids to remember for de-duplication (default 5000). */
  dedupeWindow?: number;
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** Where a delivered message came from. */
export type MsgSource = "live" | "sync";

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** The `error` frame the server sent before closing, if any. */
  error: ErrorFrame | undefined;
  /** False when a connection attempt failed before `welcome`. */
  wasOpen: boolean;
  /** When the next attempt starts. */
  reconnectInMs: number;
}

export interface SyncedInfo {
  cursor: string;
  convs: Conversation[];
  /** Messages the sync delivered (not counting ones already seen live). */
  delivered: number;
}

/** The client's events: name -> listener arguments. */
export type ClientEvents = {
  state: [state: ClientState];
  welcome: [welcome: Welcome];
  msg: [msg: Msg, source: MsgSource];
  typing: [event: TypingEvent];
  read: [event: ReceiptEvent];
  delivered: [event: ReceiptEvent];
  presence: [event: PresenceEvent];
  match: [event: MatchEvent];
  unmatch: [event: UnmatchEvent];
  /** One of the match's messages was unsent (by its sender, on any device). */
  unsent: [event: UnsentEvent];
  /** A sync finished; persist `cursor` (also sent as `cursor` after every page). */
  synced: [info: SyncedInfo];
  /** Store it after the messages before it (delivered first) are stored. */
  cursor: [cursor: string];
  disconnected: [info: DisconnectInfo];
  tokenRefreshed: [exp: number];
  /** Something failed that the client works around (a refresh, a sync, an odd frame). */
  error: [error: RendezvousError];
  /** The client stopped: after `close()` (no error) or for good (`error.fatal`). */
  closed: [error: ConnectionClosedError | undefined];
};

export interface SendOptions {
  /** Your id for the message; resending with the same `c` never creates a second one. */
  c?: string;
  /** Overrides `sendTimeoutMs`. */
  timeoutMs?: number;
}

interface PendingSend {
  c: string;
  frame: Frame;
  promise: Promise<Ack>;
  resolve: (ack: Ack) => void;
  reject: (error: Error) => void;
  inFlight: boolean;
  attempts: number;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  deadline: ReturnType<typeof setTimeout>;
}

type ReceiptKind = "read" | "delivered";

function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

function asRendezvousError(error: unknown): RendezvousError {
  return error instanceof RendezvousError ? error : new RendezvousError(String(error));
}

export class RendezvousClient extends TypedEmitter<ClientEvents> {
  private readonly url: string;
  private readonly token: string | TokenProvider;
  private readonly subprotocol: Subprotocol;
  private readonly auth: AuthMode;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly syncOnConnect: boolean;
  private readonly refreshLeadMs: number;
  private readonly requestTimeoutMs: number;
  private readonly sendTimeoutMs: number;
  private readonly openTimeoutMs: number;
  private readonly backoff: Backoff;
  private readonly seen: SeenIds;

  private stateValue: ClientState = "idle";
  private conn: Connection | undefined;
  private welcomeValue: Welcome | undefined;
  private cursorValue: string | undefined;
  private exp = 0;
  private stopped = true;
  /** Bumped by every connect(): a reconnect loop from before a close() must not go on. */
  private generation = 0;
  private lastToken: string | undefined;
  private reconnectAfterMs: number | undefined;
  private syncing: Promise<void> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private sleeper: (() => void) | undefined;
  private opening: { promise: Promise<Welcome>; resolve: (w: Welcome) => void; reject: (e: Error) => void } | undefined;
  private readonly outbox = new Map<string, PendingSend>();
  private readonly receipts = new Map<string, { t: ReceiptKind; m: string; id: MessageId }>();

  constructor(options: ClientOptions) {
    super();
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocketImpl === undefined) {
      throw new TypeError(
        "no global WebSocket here (Node 20 has one only with --experimental-websocket): " +
          "pass one, e.g. `WebSocket` from the `ws` package",
      );
    }
    if ((options.auth ?? "frame") === "header" && options.WebSocket === undefined) {
      // the global WebSocket (browsers, undici) has no way to set headers: the server would
      // wait 5 s for an auth frame and close with 4001
      throw new TypeError('auth: "header" needs a `WebSocket` option that takes { headers } (the `ws` package)');
    }
    this.url = options.url;
    this.token = options.token;
    this.subprotocol = options.subprotocol ?? "rdv.v1.msgpack";
    this.auth = options.auth ?? "frame";
    this.WebSocketImpl = WebSocketImpl;
    this.cursorValue = options.cursor;
    this.syncOnConnect = options.syncOnConnect ?? true;
    this.refreshLeadMs = options.refreshLeadMs ?? 60_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 60_000;
    this.openTimeoutMs = options.openTimeoutMs ?? 10_000;
    this.backoff = new Backoff(options.reconnect);
    this.seen = new SeenIds(options.dedupeWindow ?? 5000);
  }

  // -- state ------------------------------------------------------------------------------

  get state(): ClientState {
    return this.stateValue;
  }

  /** The `welcome` of the current (or last) connection. */
  get welcome(): Welcome | undefined {
    return this.welcomeValue;
  }

  /** The user id, once connected. */
  get user(): string | undefined {
    return this.welcomeValue?.user;
  }

  /** The cursor of the last completed sync page: store it to resume after a restart. */
  get cursor(): string | undefined {
    return this.cursorValue;
  }

  /** Sends not acked yet, by client id. */
  get pendingSends(): string[] {
    return [...this.outbox.keys()];
  }

  private setState(state: ClientState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.emit("state", state);
  }

  // -- lifecycle --------------------------------------------------------------------------

  /**
   * Connect and keep connected. Resolves with the first `welcome`; network failures are
   * retried with backoff meanwhile. Rejects with a fatal `ConnectionClosedError` when the
   * server refuses in a way retrying cannot fix (4001 with a token the provider cannot
   * replace, 4003, 4008 for a connection cap), or if `close()` is called first.
   */
  connect(): Promise<Welcome> {
    if (this.stateValue === "open" && this.welcomeValue) return Promise.resolve(this.welcomeValue);
    if (this.opening) return this.opening.promise;
    let resolve!: (w: Welcome) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Welcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.opening = { promise, resolve, reject };
    this.stopped = false;
    this.backoff.reset();
    void this.run(++this.generation);
    return promise;
  }

  /** Close for good (until `connect()` again). Pending sends reject with `NotConnectedError`. */
  async close(): Promise<void> {
    if (this.stateValue === "closed" || this.stateValue === "idle") return;
    this.stopped = true;
    this.sleeper?.();
    clearTimeout(this.refreshTimer);
    const conn = this.conn;
    this.conn = undefined;
    if (conn) {
      conn.close(CLOSE.NORMAL, "client closing");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)));
      await Promise.race([conn.closed, late]);
      clearTimeout(timer);
      conn.abandon(CLOSE.NORMAL, "client closing"); // no-op if it closed already
    }
    this.finish(undefined, new NotConnectedError("client closed"));
  }

  private finish(error: ConnectionClosedError | undefined, sendError: Error): void {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    for (const pending of [...this.outbox.values()]) this.failSend(pending, sendError);
    this.receipts.clear();
    this.opening?.reject(error ?? sendError);
    this.opening = undefined;
    this.setState("closed");
    this.emit("closed", error);
  }

  private stopFatal(error: ConnectionClosedError): void {
    this.conn?.close(CLOSE.NORMAL, "client stopping");
    this.conn = undefined;
    this.finish(error, error);
  }

  /** The reconnect loop: one iteration per connection attempt. */
  private async run(gen: number): Promise<void> {
    const alive = () => !this.stopped && this.generation === gen;
    let refused: string | undefined; // the token the server refused (4001) last
    let first = true;
    while (alive()) {
      this.setState(first ? "connecting" : "reconnecting");
      first = false;
      let token: string;
      try {
        token = typeof this.token === "string" ? this.token : await this.token();
      } catch (error) {
        this.emit("error", new RendezvousError(`token provider failed: ${String(error)}`));
        await this.sleep(this.backoff.next());
        continue;
      }
      if (!alive()) return;
      if (refused !== undefined && token === refused) {
        // "get a new token before reconnecting; don't loop with the old one"
        this.stopFatal(
          new ConnectionClosedError(CLOSE.UNAUTHORIZED, "unauthorized", {
            errorCode: "unauthorized",
            fatal: true,
            message: "the server refused the token (4001) and no other token is available",
          }),
        );
        return;
      }
      this.lastToken = token;
      let conn: Connection;
      try {
        conn = await Connection.open({
          url: this.url,
          token,
          subprotocol: this.subprotocol,
          auth: this.auth,
          WebSocket: this.WebSocketImpl,
          openTimeoutMs: this.openTimeoutMs,
          onEvent: (frame) => this.onFrame(frame),
          onDecodeError: (error) => this.emit("error", error),
        });
      } catch (error) {
        if (!alive()) return;
        const info: CloseInfo =
          error instanceof ConnectionClosedError
            ? { code: error.closeCode, reason: error.reason, error: undefined }
            : { code: CLOSE.ABNORMAL, reason: String(error), error: undefined };
        if (info.code === CLOSE.UNAUTHORIZED) refused = token;
        const errorCode = error instanceof ConnectionClosedError ? error.errorCode : undefined;
        if (!(await this.afterClose(info, errorCode, false, error instanceof Error ? error.message : String(error), alive))) return;
        continue;
      }
      if (!alive()) {
        conn.close(CLOSE.NORMAL, "client closing");
        return;
      }
      refused = undefined;
      this.adopt(conn);
      const info = await conn.closed;
      if (this.conn === conn) this.conn = undefined;
      clearTimeout(this.refreshTimer);
      if (!alive()) return;
      if (info.code === CLOSE.UNAUTHORIZED) refused = this.lastToken;
      if (!(await this.afterClose(info, info.error?.code, true, undefined, alive))) return;
    }
  }

  /** Decide on a close: false if the client stopped for good, else true after the delay. */
  private async afterClose(
    info: CloseInfo,
    errorCode: ErrorFrame["code"] | undefined,
    wasOpen: boolean,
    message: string | undefined,
    alive: () => boolean,
  ): Promise<boolean> {
    let action: CloseAction = closeAction(info.code, info.reason);
    if (info.code === CLOSE.UNAUTHORIZED && typeof this.token === "string") {
      action = { kind: "stop", why: "token refused and no token provider to get another" };
    }
    if (action.kind === "stop") {
      this.stopFatal(
        new ConnectionClosedError(info.code, info.reason, {
          errorCode: errorCode ?? info.error?.code,
          fatal: true,
          message: `${message ?? `connection closed: code=${info.code} reason=${JSON.stringify(info.reason)}`} (not reconnecting: ${action.why})`,
        }),
      );
      return false;
    }
    const delay = this.delayFor(action.window);
    this.setState("reconnecting");
    this.emit("disconnected", { code: info.code, reason: info.reason, error: info.error, wasOpen, reconnectInMs: delay });
    await this.sleep(delay);
    return alive();
  }

  private delayFor(window: "backoff" | "restart" | "slow"): number {
    if (window === "restart") {
      // a draining node says when (`reconnect.after_ms`, already jittered); else 0.5 to 5 s
      const after = this.reconnectAfterMs;
      this.reconnectAfterMs = undefined;
      return after ?? this.backoff.between(500, 5000);
    }
    return window === "slow" ? this.backoff.next(5000) : this.backoff.next();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.sleeper === done) this.sleeper = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeper = done;
    });
  }

  /** A connection got its `welcome`: make it the current one and catch up. */
  private adopt(conn: Connection): void {
    const welcome = conn.welcome!;
    this.conn = conn;
    this.welcomeValue = welcome;
    this.exp = welcome.exp;
    this.setState("open");
    this.emit("welcome", welcome);
    this.opening?.resolve(welcome);
    this.opening = undefined;
    if (welcome.hb > 0) conn.startHeartbeat(welcome.hb * 1000, this.requestTimeoutMs);
    this.scheduleRefresh(conn);
    for (const receipt of this.receipts.values()) conn.post({ ...receipt });
    this.receipts.clear();
    for (const pending of this.outbox.values()) this.trySend(pending);
    if (this.syncOnConnect) {
      this.syncWith(conn).then(
        () => this.backoff.reset(),
        (error: unknown) => {
          if (!(error instanceof ConnectionClosedError)) this.emit("error", asRendezvousError(error));
        },
      );
    } else {
      this.backoff.reset();
    }
  }

  // -- incoming ---------------------------------------------------------------------------

  private onFrame(frame: Frame): void {
    switch (frame.t) {
      case "msg":
        this.deliver(frame as unknown as Msg, "live");
        return;
      case "typing":
        this.emit("typing", frame as unknown as TypingEvent);
        return;
      case "read":
      case "delivered":
        this.emit(frame.t, frame as unknown as ReceiptEvent);
        return;
      case "presence":
        this.emit("presence", frame as unknown as PresenceEvent);
        return;
      case "match":
        this.emit("match", frame as unknown as MatchEvent);
        return;
      case "unmatch":
        this.emit("unmatch", frame as unknown as UnmatchEvent);
        return;
      case "unsent":
        this.emit("unsent", frame as unknown as UnsentEvent);
        return;
      case "reconnect":
        this.reconnectAfterMs = (frame as unknown as ReconnectEvent).after_ms;
        return;
      case "ack": {
        // the reply to a send whose request had timed out: still the answer for that `c`
        const ack = frame as unknown as Ack;
        const pending = this.outbox.get(ack.c);
        if (pending) this.settleSend(pending, ack);
        return;
      }
      case "error":
        this.emit("error", new ServerError(frame as unknown as ErrorFrame));
        return;
      default:
        // unknown types come from a newer server: ignore them, as the protocol asks
        return;
    }
  }

  private deliver(msg: Msg, source: MsgSource): boolean {
    if (!this.seen.add(msg.id)) return false;
    this.emit("msg", msg, source);
    return true;
  }

  // -- sending ----------------------------------------------------------------------------

  /**
   * Send a message; resolves with the `ack` once the server has stored it. While offline the
   * message waits and goes out after the reconnect with the same `c`, so it is stored once
   * however often it is resent. Rejects with `ServerError` for a code that retrying cannot
   * fix (`forbidden`, `too_large`, ...), `TimeoutError` (carrying `c`) after `timeoutMs`.
   */
  send(m: string, content: Content, options: SendOptions = {}): Promise<Ack> {
    const c = options.c ?? newClientId();
    const existing = this.outbox.get(c);
    if (existing) return existing.promise;
    if (this.stopped) return Promise.reject(new NotConnectedError("client is not connected: call connect() first"));
    const frame: Frame = { t: "send", m, c };
    if (content.body !== undefined) frame.body = content.body;
    if (content.media !== undefined) frame.media = content.media;
    let resolve!: (ack: Ack) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<Ack>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timeoutMs = options.timeoutMs ?? this.sendTimeoutMs;
    const pending: PendingSend = {
      c,
      frame,
      promise,
      resolve,
      reject,
      inFlight: false,
      attempts: 0,
      retryTimer: undefined,
      deadline: setTimeout(
        () => this.failSend(pending, new TimeoutError(`send ${c} not acknowledged within ${timeoutMs} ms; resend with the same c`, c)),
        timeoutMs,
      ),
    };
    this.outbox.set(c, pending);
    this.trySend(pending);
    return promise;
  }

  private trySend(pending: PendingSend): void {
    const conn = this.conn;
    if (conn === undefined || !conn.isOpen || pending.inFlight || !this.outbox.has(pending.c)) return;
    clearTimeout(pending.retryTimer);
    pending.retryTimer = undefined;
    pending.inFlight = true;
    pending.attempts++;
    conn.request<Ack>(pending.frame, this.requestTimeoutMs).then(
      (ack) => this.settleSend(pending, ack),
      (error: unknown) => {
        pending.inFlight = false;
        if (!this.outbox.has(pending.c)) return;
        if (error instanceof ServerError) {
          if (!error.retriable) {
            this.failSend(pending, error);
            return;
          }
          const delay = error.retryMs ?? Math.floor(Math.random() * Math.min(30_000, 500 * 2 ** pending.attempts));
          pending.retryTimer = setTimeout(() => this.trySend(pending), delay);
        } else if (error instanceof TimeoutError) {
          this.trySend(pending); // same `c` on the same connection: the server dedupes
        }
        // closed: resent by adopt() after the next welcome
      },
    );
  }

  private settleSend(pending: PendingSend, ack: Ack): void {
    if (this.outbox.get(pending.c) !== pending) return;
    this.outbox.delete(pending.c);
    clearTimeout(pending.deadline);
    clearTimeout(pending.retryTimer);
    this.seen.add(ack.id); // our own message comes back in the next sync: not news to us
    pending.resolve(ack);
  }

  private failSend(pending: PendingSend, error: Error): void {
    if (this.outbox.get(pending.c) !== pending) return;
    this.outbox.delete(pending.c);
    clearTimeout(pending.deadline);
    clearTimeout(pending.retryTimer);
    pending.reject(error);
  }

  /**
   * Typing indicator. Ephemeral: dropped (returns false) while offline. While the user types,
   * call it with `on: true` every 3 to 4 s (the server forgets it after `typing_ttl_s`).
   */
  typing(m: string, on: boolean): boolean {
    const conn = this.conn;
    if (conn === undefined || !conn.isOpen) return false;
    conn.post({ t: "typing", m, on });
    return true;
  }

  /** The user has read everything up to and including `id` (see `receipt`). */
  read(m: string, id: MessageId, options: { confirm?: boolean } = {}): Promise<void> {
    return this.receipt("read", m, id, options.confirm ?? false);
  }

  /** The device holds everything up to and including `id` (see `receipt`). */
  delivered(m: string, id: MessageId, options: { confirm?: boolean } = {}): Promise<void> {
    return this.receipt("delivered", m, id, options.confirm ?? false);
  }

  /**
   * Receipts are cumulative ("up to `id`"), so while offline only the newest per match and
   * kind is kept and sent after the reconnect. With `confirm`, waits for the server's `ok`.
   */
  private async receipt(t: ReceiptKind, m: string, id: MessageId, confirm: boolean): Promise<void> {
    if (confirm) {
      const conn = await this.whenOpen();
      await conn.request<OkReply>({ t, m, id }, this.requestTimeoutMs);
      return;
    }
    const conn = this.conn;
    if (conn !== undefined && conn.isOpen) {
      conn.post({ t, m, id });
      return;
    }
    const key = `${t}\u0000${m}`;
    const held = this.receipts.get(key);
    if (held === undefined || compareIds(id, held.id) > 0) this.receipts.set(key, { t, m, id });
  }

  // -- requests ---------------------------------------------------------------------------

  /** Which of my matches are online (only matches are ever reported). */
  async presence(): Promise<PresenceUser[]> {
    const conn = await this.whenOpen();
    const reply = await conn.request<PresenceReply>({ t: "presence" }, this.requestTimeoutMs);
    return reply.users;
  }

  /**
   * Unsend one of my own messages (within the server's `unsend_window_s`, 15 min by
   * default): it becomes a tombstone (`deleted: true`) in history and sync, and both
   * members' other devices get an `unsent` event. Rejects with `forbidden` (not mine, or
   * too late) or `not_found`.
   */
  async unsend(m: string, id: MessageId): Promise<void> {
    const conn = await this.whenOpen();
    await conn.request<OkReply>({ t: "unsend", m, id }, this.requestTimeoutMs);
  }

  /** Older messages of one match, newest first; page with `before` = the oldest id received. */
  async history(m: string, options: { before?: MessageId; limit?: number } = {}): Promise<HistoryReply> {
    const conn = await this.whenOpen();
    const frame: Frame = { t: "history", m };
    if (options.before !== undefined) frame.before = options.before;
    if (options.limit !== undefined) frame.limit = options.limit;
    return conn.request<HistoryReply>(frame, this.requestTimeoutMs);
  }

  /** Catch up now from the stored cursor (done by itself after every connect). */
  async sync(): Promise<void> {
    await this.syncWith(await this.whenOpen());
  }

  /** Round trip to the server (also done by itself as the heartbeat). */
  async ping(): Promise<void> {
    const conn = await this.whenOpen();
    await conn.request({ t: "ping" }, this.requestTimeoutMs);
  }

  /** Page through `sync` from the cursor; one at a time, concurrent callers share it. */
  private syncWith(conn: Connection): Promise<void> {
    if (this.syncing) return this.syncing;
    const run = async () => {
      let delivered = 0;
      const convs: Conversation[] = [];
      for (;;) {
        const frame: Frame = { t: "sync" };
        if (this.cursorValue !== undefined) frame.since = this.cursorValue;
        const reply = await conn.request<SyncReply>(frame, this.requestTimeoutMs);
        for (const msg of reply.msgs ?? []) if (this.deliver(msg, "sync")) delivered++;
        convs.push(...(reply.convs ?? []));
        // after the messages: an app that stores on `msg` has them before it stores this
        this.cursorValue = reply.cursor;
        this.emit("cursor", reply.cursor);
        if (!reply.more) break;
      }
      this.emit("synced", { cursor: this.cursorValue, convs, delivered });
    };
    this.syncing = run().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  /** The current connection, waiting for one (up to the request timeout) while reconnecting. */
  private whenOpen(): Promise<Connection> {
    const conn = this.conn;
    if (conn !== undefined && conn.isOpen) return Promise.resolve(conn);
    if (this.stopped) return Promise.reject(new NotConnectedError("client is not connected: call connect() first"));
    return new Promise<Connection>((resolve, reject) => {
      const timer = setTimeout(() => {
        offWelcome();
        offClosed();
        reject(new TimeoutError(`not connected within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      const offWelcome = this.on("welcome", () => {
        clearTimeout(timer);
        offWelcome();
        offClosed();
        resolve(this.conn!);
      });
      const offClosed = this.on("closed", (error) => {
        clearTimeout(timer);
        offWelcome();
        offClosed();
        reject(error ?? new NotConnectedError("client closed"));
      });
    });
  }

  // -- token refresh ----------------------------------------------------------------------

  private scheduleRefresh(conn: Connection): void {
    clearTimeout(this.refreshTimer);
    if (typeof this.token === "string") return; // nothing to refresh with: 4002, then stop
    const remaining = this.exp * 1000 - Date.now();
    this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.max(remaining - this.refreshLeadMs, 1000));
  }

  private async refresh(conn: Connection): Promise<void> {
    if (conn !== this.conn || !conn.isOpen || typeof this.token === "string") return;
    try {
      const token = await this.token();
      const ok = await conn.request<OkReply>({ t: "refresh", token }, this.requestTimeoutMs);
      if (conn !== this.conn) return;
      this.lastToken = token;
      const exp = ok.exp ?? 0;
      if (exp > this.exp) {
        this.exp = exp;
        this.emit("tokenRefreshed", exp);
        this.scheduleRefresh(conn);
      } else {
        // refreshing again would only repeat this: let it expire (4002) and reconnect
        this.emit("error", new RendezvousError(`the token provider returned a token that does not expire later (exp ${exp})`));
      }
    } catch (error) {
      if (conn !== this.conn) return;
      this.emit("error", asRendezvousError(error));
      // again while the current token lives (the server allows one refresh per 10 s);
      // past `exp` the server closes 4002 and the reconnect fetches a new token anyway
      const remaining = this.exp * 1000 - Date.now();
      if (remaining > 2000) this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(10_000, remaining / 2));
    }
  }
}
