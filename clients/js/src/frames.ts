/**
 * The frames of the rdv.v1 wire protocol (docs/protocol.md), as the SDK hands them to you.
 *
 * Both subprotocols carry the same shapes. The one difference on the wire, message ids (64-bit
 * integers in MessagePack, decimal strings in JSON), is removed by the codec: every message-id
 * field here is a decimal string, because a JavaScript number cannot hold 2^63-1 exactly and a
 * string round-trips through JSON, storage and the server unchanged. Compare ids with
 * `compareIds`, never with `<` on the strings.
 */

/** A server message id as a decimal string, e.g. `"794354201395212288"`. */
export type MessageId = string;

/** The two subprotocols the server speaks. */
export type Subprotocol = "rdv.v1.msgpack" | "rdv.v1.json";

export const MSGPACK: Subprotocol = "rdv.v1.msgpack";
export const JSON_SUBPROTOCOL: Subprotocol = "rdv.v1.json";

/** The bounds this server enforces, sent in `welcome`; read them instead of hard-coding. */
export interface Limits {
  max_frame_bytes: number;
  max_body_chars: number;
  max_client_id_chars: number;
  history_max: number;
  sync_max_msgs: number;
  typing_ttl_s: number;
  [other: string]: unknown;
}

export interface Welcome {
  t: "welcome";
  user: string;
  session: string;
  node: string;
  /** Heartbeat interval in seconds: send something at least this often. */
  hb: number;
  /** Token expiry in unix seconds. */
  exp: number;
  limits: Limits;
}

export interface Media {
  kind: "image" | "voice" | "gif";
  url: string;
  w?: number;
  h?: number;
  dur?: number;
}

/** What a `send` carries: exactly one of `body` or `media`. */
export type Content = { body: string; media?: undefined } | { media: Media; body?: undefined };

/** A chat message, live or from `sync`/`history`. */
export interface Msg {
  t: "msg";
  m: string;
  id: MessageId;
  from: string;
  /** Stored at, unix ms. */
  ts: number;
  body?: string;
  media?: Media;
  /** The sender's client id: lets your own other devices match it to a pending message. */
  c?: string;
  /** A tombstone (unsent, or its sender's account erased): no body, media or `c`. */
  deleted?: true;
}

export interface Ack {
  t: "ack";
  r: number;
  m: string;
  c: string;
  id: MessageId;
  ts: number;
}

export interface TypingEvent {
  t: "typing";
  m: string;
  from: string;
  on: boolean;
}

export interface ReceiptEvent {
  t: "read" | "delivered";
  m: string;
  from: string;
  id: MessageId;
}

export interface PresenceEvent {
  t: "presence";
  u: string;
  on: boolean;
  /** Coarse last-seen time, unix ms; absent when unknown or hidden. */
  seen?: number;
}

export interface PresenceUser {
  u: string;
  on: boolean;
  seen?: number;
}

export interface MatchEvent {
  t: "match";
  m: string;
  peer: string;
  ts: number;
  super?: boolean;
}

export interface UnmatchEvent {
  t: "unmatch";
  m: string;
}

/** A message of match `m` was unsent by its sender: drop its content, keep a tombstone. */
export interface UnsentEvent {
  t: "unsent";
  m: string;
  id: MessageId;
}

export interface ReconnectEvent {
  t: "reconnect";
  after_ms: number;
}

/** Error codes of the protocol; decide on these, never on `msg`. */
export type ErrorCode =
  | "bad_frame"
  | "bad_request"
  | "unknown_type"
  | "too_large"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "rate_limited"
  | "unavailable"
  | "internal"
  | "opener_limit"
  | "duplicate_opener"
  | "quota_exceeded";

export interface ErrorFrame {
  t: "error";
  code: ErrorCode;
  msg: string;
  r?: number;
  retry_ms?: number;
  /** With `quota_exceeded`: unix ms when the quota refills. */
  reset_ms?: number;
}

export interface Conversation {
  m: string;
  peer: string;
  last_id: MessageId;
  unread: number;
  peer_read?: MessageId;
}

export interface SyncReply {
  t: "sync";
  r: number;
  cursor: string;
  more: boolean;
  convs: Conversation[];
  msgs: Msg[];
}

export interface HistoryReply {
  t: "history";
  r: number;
  m: string;
  more: boolean;
  msgs: Msg[];
}

export interface PresenceReply {
  t: "presence";
  r: number;
  users: PresenceUser[];
}

export interface OkReply {
  t: "ok";
  r: number;
  exp?: number;
}

/** Any decoded frame: a map with a string `t`. */
export interface Frame {
  t: string;
  r?: number | null;
  [field: string]: unknown;
}
