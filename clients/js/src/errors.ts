/**
 * What can go wrong, as values an app can decide on. Every error carries the protocol's own
 * code (`ServerError.code`, `ConnectionClosedError.closeCode`) so an app branches on codes
 * from docs/protocol.md, never on message text.
 */
import type { ErrorCode, ErrorFrame } from "./frames.js";

/** Base class: `instanceof RendezvousError` catches everything this SDK throws. */
export class RendezvousError extends Error {
  override name = "RendezvousError";
}

/** The server answered a request with an `error` frame. */
export class ServerError extends RendezvousError {
  override name = "ServerError";
  readonly code: ErrorCode;
  /** How long the server asks you to wait before retrying (`rate_limited`, `unavailable`). */
  readonly retryMs: number | undefined;
  readonly frame: ErrorFrame;

  constructor(frame: ErrorFrame) {
    super(`${frame.code}: ${frame.msg}${frame.retry_ms != null ? ` (retry in ${frame.retry_ms} ms)` : ""}`);
    this.code = frame.code;
    this.retryMs = frame.retry_ms ?? undefined;
    this.frame = frame;
  }

  /** True for the codes where resending the same request later can succeed. */
  get retriable(): boolean {
    return RETRIABLE.has(this.code);
  }
}

/** Codes after which the protocol says "retry" (a `send` with the same `c`). */
export const RETRIABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["rate_limited", "unavailable", "internal"]);

/**
 * The socket closed: while connecting (the server refused: `closeCode` 4001 means get a new
 * token), while a request was waiting, or for good (`fatal`: the SDK will not reconnect).
 */
export class ConnectionClosedError extends RendezvousError {
  override name = "ConnectionClosedError";
  /** The WebSocket close code, 1006 when the connection just dropped. */
  readonly closeCode: number;
  readonly reason: string;
  /** The `code` of the `error` frame the server sent before closing, e.g. `"unauthorized"`. */
  readonly errorCode: ErrorCode | undefined;
  /** True when the SDK stopped reconnecting because of this close. */
  readonly fatal: boolean;

  constructor(closeCode: number, reason: string, options: { errorCode?: ErrorCode | undefined; fatal?: boolean; message?: string } = {}) {
    super(
      options.message ??
        `connection closed: code=${closeCode}${reason ? ` reason=${JSON.stringify(reason)}` : ""}` +
          (options.errorCode ? ` error=${options.errorCode}` : ""),
    );
    this.closeCode = closeCode;
    this.reason = reason;
    this.errorCode = options.errorCode;
    this.fatal = options.fatal ?? false;
  }
}

/** No reply within the timeout. For a `send`, the message may still have been stored: resend
 * with the same client id `c` (the error carries it) and the server will not duplicate it. */
export class TimeoutError extends RendezvousError {
  override name = "TimeoutError";
  readonly c: string | undefined;

  constructor(message: string, c?: string) {
    super(message);
    this.c = c;
  }
}

/** A request that needs a live connection was made while there was none. */
export class NotConnectedError extends RendezvousError {
  override name = "NotConnectedError";
}
