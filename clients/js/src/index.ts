/**
 * Rendezvous SDK: a typed client for the rdv.v1 chat protocol (docs/protocol.md), for
 * browsers and Node 20+. Start with `RendezvousClient`.
 */
export { RendezvousClient } from "./client.js";
export type {
  ClientEvents,
  ClientOptions,
  ClientState,
  DisconnectInfo,
  MsgSource,
  SendOptions,
  SyncedInfo,
  TokenProvider,
} from "./client.js";
export type { AuthMode, WebSocketConstructor, WebSocketLike } from "./connection.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { CLOSE, closeAction, type CloseAction } from "./close-codes.js";
export { codecFor, DecodeError, type Codec } from "./codec.js";
export { TypedEmitter, type EventMap, type Listener } from "./emitter.js";
export { ConnectionClosedError, NotConnectedError, RendezvousError, RETRIABLE, ServerError, TimeoutError } from "./errors.js";
export { compareIds, maxId } from "./ids.js";
export * from "./frames.js";
