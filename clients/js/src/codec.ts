/**
 * The two encodings of rdv.v1: `rdv.v1.msgpack` (binary frames) and `rdv.v1.json` (text
 * frames). The server refuses a text frame on msgpack and a binary one on JSON (`bad_frame`),
 * so each codec also says which kind of frame it writes.
 *
 * Decoding normalises what differs between the two, so the rest of the SDK sees one shape:
 * - message-id fields become decimal strings (msgpack sends 64-bit integers, which `number`
 *   would silently round past 2^53; JSON already sends strings);
 * - any other 64-bit integer (a `ts` in ms is one in msgpack) becomes a `number`, exact for
 *   every time value the server sends.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import type { Frame, Subprotocol } from "./frames.js";

/** Fields that hold message ids anywhere in a server frame (protocol/codec.py ID_FIELDS). */
const ID_FIELDS: ReadonlySet<string> = new Set(["id", "before", "last_id", "peer_read"]);

export interface Codec {
  readonly name: Subprotocol;
  /** True when frames go as binary WebSocket messages. */
  readonly binary: boolean;
  encode(frame: Frame): Uint8Array | string;
  /** One frame; throws `DecodeError` for bytes that are not a map with a string `t`. */
  decode(data: unknown): Frame;
}

/** A frame the server sent that this SDK cannot read (a bug on one side: log it). */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
}

function normalise(value: unknown, key: string | undefined): unknown {
  if (typeof value === "bigint") return key !== undefined && ID_FIELDS.has(key) ? value.toString() : Number(value);
  if (typeof value === "number") return key !== undefined && ID_FIELDS.has(key) && Number.isInteger(value) ? String(value) : value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = normalise(value[i], undefined);
    return value;
  }
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) obj[k] = normalise(obj[k], k);
  }
  return value;
}

function asFrame(value: unknown): Frame {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DecodeError("frame is not a map");
  }
  const frame = normalise(value, undefined) as Frame;
  if (typeof frame.t !== "string") throw new DecodeError("frame has no string `t`");
  return frame;
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new DecodeError(`expected a binary frame on rdv.v1.msgpack, got ${typeof data}`);
}

class MsgpackCodec implements Codec {
  readonly name: Subprotocol = "rdv.v1.msgpack";
  readonly binary = true;
  private readonly encoder = new Encoder({ ignoreUndefined: true });
  // useBigInt64: a uint64 id must not pass through `number` on its way to a string
  private readonly decoder = new Decoder({ useBigInt64: true });

  encode(frame: Frame): Uint8Array {
    return this.encoder.encode(frame);
  }

  decode(data: unknown): Frame {
    let value: unknown;
    try {
      value = this.decoder.decode(toBytes(data));
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError(`undecodable msgpack frame: ${String(err)}`);
    }
    return asFrame(value);
  }
}

class JsonCodec implements Codec {
  readonly name: Subprotocol = "rdv.v1.json";
  readonly binary = false;

  encode(frame: Frame): string {
    return JSON.stringify(frame);
  }

  decode(data: unknown): Frame {
    if (typeof data !== "string") throw new DecodeError(`expected a text frame on rdv.v1.json, got ${typeof data}`);
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch (err) {
      throw new DecodeError(`undecodable JSON frame: ${String(err)}`);
    }
    return asFrame(value);
  }
}

/** The codec of a negotiated subprotocol; the server speaks msgpack when none was agreed. */
export function codecFor(subprotocol: string | undefined | null): Codec {
  return subprotocol === "rdv.v1.json" ? new JsonCodec() : new MsgpackCodec();
}
