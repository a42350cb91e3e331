/**
 * One WebSocket session: open, authenticate, wait for `welcome`, then match replies to
 * requests by `r` and hand every other frame to `onEvent`. It never reconnects; the client
 * (client.ts) owns the lifecycle and opens a new Connection after each loss. Keeping the two
 * apart means a Connection's state only ever moves forward (opening, open, closed), which is
 * what makes "reject every pending request exactly once on close" easy to get right.
 */
import { codecFor, DecodeError, type Codec } from "./codec.js";
import { ConnectionClosedError, NotConnectedError, RendezvousError, ServerError, TimeoutError } from "./errors.js";
import type { ErrorFrame, Frame, Subprotocol, Welcome } from "./frames.js";

/**
 * The part of a WebSocket the SDK uses: the browser's `WebSocket`, Node's global one
 * (`--experimental-websocket` in Node 20, default from Node 22) and the `ws` package all fit.
 * Handler arguments are `any` because each implementation declares its own event classes;
 * the SDK reads only `data`, `code` and `reason` from them.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/**
 * A WebSocket constructor. The third argument is only passed with `auth: "header"` and
 * follows the `ws` package (`{ headers }`); browsers cannot set headers at all.
 */
export type WebSocketConstructor = new (
  url: string,
  protocols: string[],
  options?: { headers: Record<string, string> },
) => WebSocketLike;

export type AuthMode = "frame" | "header";

export interface CloseInfo {
  code: number;
  reason: string;
  /** The `error` frame without `r` the server sent last (e.g. `unauthorized` before 4001). */
  error: ErrorFrame | undefined;
}

export interface ConnectionOptions {
  url: string;
  token: string;
  subprotocol: Subprotocol;
  auth: AuthMode;
  WebSocket: WebSocketConstructor;
  openTimeoutMs: number;
  onEvent: (frame: Frame) => void;
  onDecodeError: (error: DecodeError) => void;
}

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;
/** Client-side close when the peer stopped answering pings (3000-4999 is ours to use). */
export const HEARTBEAT_CLOSE = 4000;

export class Connection {
  /** Resolves once, when the socket is gone (never rejects). */
  readonly closed: Promise<CloseInfo>;
  welcome: Welcome | undefined;
  readonly codec: Codec;

  private readonly ws: WebSocketLike;
  private readonly pending = new Map<number, Pending>();
  private nextR = 1;
  private lastSentAt = Date.now();
  private lastError: ErrorFrame | undefined;
  private closeInfo: CloseInfo | undefined;
  private settleClosed!: (info: CloseInfo) => void;
  private heartbeat: ReturnType<typeof setTimeout> | undefined;

  private constructor(ws: WebSocketLike, codec: Codec) {
    this.ws = ws;
    this.codec = codec;
    this.closed = new Promise((resolve) => (this.settleClosed = resolve));
  }

  /**
   * Open and authenticate. Resolves after `welcome`; rejects with `ConnectionClosedError`
   * (its `closeCode`/`errorCode` say why: 4001 + `unauthorized` for a refused token) or
   * `TimeoutError` after `openTimeoutMs`.
   */
  static open(options: ConnectionOptions): Promise<Connection> {
    const headers = options.auth === "header" ? { headers: { Authorization: `Bearer ${options.token}` } } : undefined;
    const ws = headers
      ? new options.WebSocket(options.url, [options.subprotocol], headers)
      : new options.WebSocket(options.url, [options.subprotocol]);
    ws.binaryType = "arraybuffer";
    // the codec is known only once the server has picked a subprotocol; until `open` it is
    // the one we asked for, which is what it picks whenever it speaks rdv.v1 at all
    const conn = new Connection(ws, codecFor(options.subprotocol));
    return conn.handshake(options);
  }

  private handshake(options: ConnectionOptions): Promise<Connection> {
    const ws = this.ws;
    let codec = this.codec;
    return new Promise<Connection>((resolve, reject) => {
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      };
      const timer = setTimeout(() => {
        fail(new TimeoutError(`no welcome from ${options.url} within ${options.openTimeoutMs} ms`));
        this.abandon(HEARTBEAT_CLOSE, "open timeout");
      }, options.openTimeoutMs);

      ws.onopen = () => {
        codec = codecFor(ws.protocol || options.subprotocol);
        (this as { codec: Codec }).codec = codec;
        if (options.auth === "frame") this.write({ t: "auth", token: options.token });
      };
      ws.onmessage = (event: { data: unknown }) => {
        let frame: Frame;
        try {
          frame = codec.decode(event.data);
        } catch (error) {
          if (error instanceof DecodeError) options.onDecodeError(error);
          return;
        }
        if (this.welcome === undefined) {
          if (frame.t === "welcome") {
            this.welcome = frame as unknown as Welcome;
            settled = true;
            clearTimeout(timer);
            resolve(this);
          } else if (frame.t === "error") {
            this.lastError = frame as unknown as ErrorFrame; // the close that follows says the rest
          }
          return;
        }
        this.dispatch(frame, options.onEvent);
      };
      ws.onerror = () => {
        // always followed by `close`, which carries the code; nothing useful in the event
      };
      ws.onclose = (event: { code?: number; reason?: string }) => {
        this.finish(event.code ?? 1006, event.reason ?? "");
        const info = this.closeInfo!;
        fail(
          new ConnectionClosedError(info.code, info.reason, {
            errorCode: info.error?.code,
            message: info.error
              ? `connection refused: close ${info.code}, ${info.error.code}: ${info.error.msg}`
              : undefined,
          }),
        );
      };
    });
  }

  private dispatch(frame: Frame, onEvent: (frame: Frame) => void): void {
    const r = frame.r;
    if (typeof r === "number") {
      const pending = this.pending.get(r);
      if (pending !== undefined) {
        this.pending.delete(r);
        clearTimeout(pending.timer);
        if (frame.t === "error") pending.reject(new ServerError(frame as unknown as ErrorFrame));
        else pending.resolve(frame);
        return;
      }
    }
    if (frame.t === "error" && r == null) this.lastError = frame as unknown as ErrorFrame;
    onEvent(frame);
  }

  get isOpen(): boolean {
    return this.closeInfo === undefined && this.ws.readyState === OPEN;
  }

  private write(frame: Frame): void {
    this.ws.send(this.codec.encode(frame));
    this.lastSentAt = Date.now();
  }

  /** Send a frame that gets no reply (`typing`, `read`, `delivered` without `r`). */
  post(frame: Frame): void {
    if (!this.isOpen) throw new NotConnectedError(`cannot send ${frame.t}: not connected`);
    this.write(frame);
  }

  /**
   * Send `frame` with a fresh `r`; resolves with the reply carrying it. Rejects with
   * `ServerError` for an `error` reply, `ConnectionClosedError` if the socket ends first,
   * `TimeoutError` after `timeoutMs` (a reply after that is handed to `onEvent`).
   */
  request<T = Frame>(frame: Frame, timeoutMs: number): Promise<T> {
    if (!this.isOpen) return Promise.reject(new NotConnectedError(`cannot send ${frame.t}: not connected`));
    const r = this.nextR++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(r);
        reject(new TimeoutError(`no reply to ${frame.t} (r=${r}) within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(r, { resolve: resolve as (f: Frame) => void, reject, timer });
      try {
        this.write({ ...frame, r });
      } catch (error) {
        this.pending.delete(r);
        clearTimeout(timer);
        reject(error instanceof RendezvousError ? error : new NotConnectedError(String(error)));
      }
    });
  }

  /**
   * Ping whenever nothing was sent for `hbMs` (the server's `welcome.hb`), and give the
   * socket up when a ping gets no pong: a phone that changed networks often keeps a dead TCP
   * connection that would otherwise only time out minutes later.
   */
  startHeartbeat(hbMs: number, timeoutMs: number): void {
    const tick = () => {
      if (!this.isOpen) return;
      const idle = Date.now() - this.lastSentAt;
      if (idle < hbMs) {
        this.heartbeat = setTimeout(tick, hbMs - idle);
        return;
      }
      this.request({ t: "ping" }, timeoutMs).then(
        () => {
          this.heartbeat = setTimeout(tick, hbMs);
        },
        (error: unknown) => {
          if (error instanceof TimeoutError) this.abandon(HEARTBEAT_CLOSE, "no pong: connection presumed dead");
        },
      );
    };
    this.heartbeat = setTimeout(tick, hbMs);
  }

  /** Close politely (the server sees `code`); `closed` resolves when the server answers. */
  close(code = 1000, reason = ""): void {
    try {
      this.ws.close(code, reason);
    } catch {
      this.abandon(code, reason);
    }
  }

  /**
   * Stop using the socket now, without waiting for the close handshake (which never completes
   * on a dead connection): start a close, detach, and report `closed` at once.
   */
  abandon(code: number, reason: string): void {
    try {
      this.ws.close(code, reason);
    } catch {
      // already closing or closed
    }
    this.ws.onmessage = null;
    this.finish(code, reason);
    this.ws.onclose?.({ code, reason });
    this.ws.onclose = null;
    this.ws.onopen = null;
  }

  private finish(code: number, reason: string): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code, reason, error: this.lastError };
    clearTimeout(this.heartbeat);
    const error = new ConnectionClosedError(code, reason, { errorCode: this.lastError?.code });
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
    this.settleClosed(this.closeInfo);
  }
}
