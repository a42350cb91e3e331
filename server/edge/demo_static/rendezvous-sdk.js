// @rendezvous/sdk for browsers, with @msgpack/msgpack. Generated from clients/js/src by
// `make demo-bundle` (clients/js/scripts/bundle.mjs): do not edit.
//
// @msgpack/msgpack's license:
//   Copyright 2019 The MessagePack Community.
//
//   Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted, provided that the above copyright notice and this permission notice appear in all copies.
//
//   THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.

// src/backoff.ts
var Backoff = class {
  baseMs;
  capMs;
  random;
  attempt = 0;
  constructor(options = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 3e4;
    this.random = options.random ?? Math.random;
  }
  /** The next delay: uniform in [0, min(cap, base * 2^attempt)), `floorMs` at least. */
  next(floorMs = 0) {
    const bound = Math.min(this.capMs, Math.max(this.baseMs, floorMs) * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.max(0, Math.floor(this.random() * bound));
  }
  /** A delay uniform in [lo, hi), for the protocol's fixed windows (restart: 0.5 to 5 s). */
  between(lo, hi) {
    return Math.floor(lo + this.random() * (hi - lo));
  }
  /** After a connection succeeded: the next failure starts from the first bound again. */
  reset() {
    this.attempt = 0;
  }
};

// src/close-codes.ts
var CLOSE = {
  NORMAL: 1e3,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  RESTART: 1012,
  UNAUTHORIZED: 4001,
  TOKEN_EXPIRED: 4002,
  FORBIDDEN: 4003,
  POLICY: 4008,
  TOO_SLOW: 4009
};
function closeAction(code, reason) {
  switch (code) {
    case CLOSE.GOING_AWAY:
    case CLOSE.RESTART:
      return { kind: "reconnect", window: "restart", newToken: false };
    case CLOSE.UNAUTHORIZED:
      return { kind: "reconnect", window: "backoff", newToken: true };
    case CLOSE.TOKEN_EXPIRED:
      return { kind: "reconnect", window: "backoff", newToken: true };
    case CLOSE.FORBIDDEN:
      return { kind: "stop", why: "forbidden" };
    case CLOSE.POLICY:
      if (reason.startsWith("max_connections_per_user")) {
        return { kind: "stop", why: "replaced by another connection of this user" };
      }
      return { kind: "reconnect", window: "slow", newToken: false };
    default:
      return { kind: "reconnect", window: "backoff", newToken: false };
  }
}

// node_modules/@msgpack/msgpack/dist.esm/utils/utf8.mjs
function utf8Count(str) {
  const strLength = str.length;
  let byteLength = 0;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      byteLength++;
      continue;
    } else if ((value & 4294965248) === 0) {
      byteLength += 2;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        byteLength += 3;
      } else {
        byteLength += 4;
      }
    }
  }
  return byteLength;
}
function utf8EncodeJs(str, output, outputOffset) {
  const strLength = str.length;
  let offset = outputOffset;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      output[offset++] = value;
      continue;
    } else if ((value & 4294965248) === 0) {
      output[offset++] = value >> 6 & 31 | 192;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        output[offset++] = value >> 12 & 15 | 224;
        output[offset++] = value >> 6 & 63 | 128;
      } else {
        output[offset++] = value >> 18 & 7 | 240;
        output[offset++] = value >> 12 & 63 | 128;
        output[offset++] = value >> 6 & 63 | 128;
      }
    }
    output[offset++] = value & 63 | 128;
  }
}
var sharedTextEncoder = new TextEncoder();
var TEXT_ENCODER_THRESHOLD = 50;
function utf8EncodeTE(str, output, outputOffset) {
  sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
}
function utf8Encode(str, output, outputOffset) {
  if (str.length > TEXT_ENCODER_THRESHOLD) {
    utf8EncodeTE(str, output, outputOffset);
  } else {
    utf8EncodeJs(str, output, outputOffset);
  }
}
var CHUNK_SIZE = 4096;
function utf8DecodeJs(bytes, inputOffset, byteLength) {
  let offset = inputOffset;
  const end = offset + byteLength;
  const units = [];
  let result = "";
  while (offset < end) {
    const byte1 = bytes[offset++];
    if ((byte1 & 128) === 0) {
      units.push(byte1);
    } else if ((byte1 & 224) === 192) {
      const byte2 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 6 | byte2);
    } else if ((byte1 & 240) === 224) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
    } else if ((byte1 & 248) === 240) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      const byte4 = bytes[offset++] & 63;
      let unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
      if (unit > 65535) {
        unit -= 65536;
        units.push(unit >>> 10 & 1023 | 55296);
        unit = 56320 | unit & 1023;
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
    if (units.length >= CHUNK_SIZE) {
      result += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  if (units.length > 0) {
    result += String.fromCharCode(...units);
  }
  return result;
}
var sharedTextDecoder = new TextDecoder();
var TEXT_DECODER_THRESHOLD = 200;
function utf8DecodeTD(bytes, inputOffset, byteLength) {
  const stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
  return sharedTextDecoder.decode(stringBytes);
}
function utf8Decode(bytes, inputOffset, byteLength) {
  if (byteLength > TEXT_DECODER_THRESHOLD) {
    return utf8DecodeTD(bytes, inputOffset, byteLength);
  } else {
    return utf8DecodeJs(bytes, inputOffset, byteLength);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/ExtData.mjs
var ExtData = class {
  type;
  data;
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/DecodeError.mjs
var DecodeError = class _DecodeError extends Error {
  constructor(message) {
    super(message);
    const proto = Object.create(_DecodeError.prototype);
    Object.setPrototypeOf(this, proto);
    Object.defineProperty(this, "name", {
      configurable: true,
      enumerable: false,
      value: _DecodeError.name
    });
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/int.mjs
var UINT32_MAX = 4294967295;
function setUint64(view, offset, value) {
  const high = value / 4294967296;
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function setInt64(view, offset, value) {
  const high = Math.floor(value / 4294967296);
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function getInt64(view, offset) {
  const high = view.getInt32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}
function getUint64(view, offset) {
  const high = view.getUint32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}

// node_modules/@msgpack/msgpack/dist.esm/timestamp.mjs
var EXT_TIMESTAMP = -1;
var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
function encodeTimeSpecToTimestamp({ sec, nsec }) {
  if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
    if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
      const rv = new Uint8Array(4);
      const view = new DataView(rv.buffer);
      view.setUint32(0, sec);
      return rv;
    } else {
      const secHigh = sec / 4294967296;
      const secLow = sec & 4294967295;
      const rv = new Uint8Array(8);
      const view = new DataView(rv.buffer);
      view.setUint32(0, nsec << 2 | secHigh & 3);
      view.setUint32(4, secLow);
      return rv;
    }
  } else {
    const rv = new Uint8Array(12);
    const view = new DataView(rv.buffer);
    view.setUint32(0, nsec);
    setInt64(view, 4, sec);
    return rv;
  }
}
function encodeDateToTimeSpec(date) {
  const msec = date.getTime();
  const sec = Math.floor(msec / 1e3);
  const nsec = (msec - sec * 1e3) * 1e6;
  const nsecInSec = Math.floor(nsec / 1e9);
  return {
    sec: sec + nsecInSec,
    nsec: nsec - nsecInSec * 1e9
  };
}
function encodeTimestampExtension(object) {
  if (object instanceof Date) {
    const timeSpec = encodeDateToTimeSpec(object);
    return encodeTimeSpecToTimestamp(timeSpec);
  } else {
    return null;
  }
}
function decodeTimestampToTimeSpec(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (data.byteLength) {
    case 4: {
      const sec = view.getUint32(0);
      const nsec = 0;
      return { sec, nsec };
    }
    case 8: {
      const nsec30AndSecHigh2 = view.getUint32(0);
      const secLow32 = view.getUint32(4);
      const sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
      const nsec = nsec30AndSecHigh2 >>> 2;
      return { sec, nsec };
    }
    case 12: {
      const sec = getInt64(view, 4);
      const nsec = view.getUint32(0);
      return { sec, nsec };
    }
    default:
      throw new DecodeError(`Unrecognized data size for timestamp (expected 4, 8, or 12): ${data.length}`);
  }
}
function decodeTimestampExtension(data) {
  const timeSpec = decodeTimestampToTimeSpec(data);
  return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
}
var timestampExtension = {
  type: EXT_TIMESTAMP,
  encode: encodeTimestampExtension,
  decode: decodeTimestampExtension
};

// node_modules/@msgpack/msgpack/dist.esm/ExtensionCodec.mjs
var ExtensionCodec = class _ExtensionCodec {
  static defaultCodec = new _ExtensionCodec();
  // ensures ExtensionCodecType<X> matches ExtensionCodec<X>
  // this will make type errors a lot more clear
  // eslint-disable-next-line @typescript-eslint/naming-convention
  __brand;
  // built-in extensions
  builtInEncoders = [];
  builtInDecoders = [];
  // custom extensions
  encoders = [];
  decoders = [];
  constructor() {
    this.register(timestampExtension);
  }
  register({ type, encode, decode }) {
    if (type >= 0) {
      this.encoders[type] = encode;
      this.decoders[type] = decode;
    } else {
      const index = -1 - type;
      this.builtInEncoders[index] = encode;
      this.builtInDecoders[index] = decode;
    }
  }
  tryToEncode(object, context) {
    for (let i = 0; i < this.builtInEncoders.length; i++) {
      const encodeExt = this.builtInEncoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = -1 - i;
          return new ExtData(type, data);
        }
      }
    }
    for (let i = 0; i < this.encoders.length; i++) {
      const encodeExt = this.encoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = i;
          return new ExtData(type, data);
        }
      }
    }
    if (object instanceof ExtData) {
      return object;
    }
    return null;
  }
  decode(data, type, context) {
    const decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
    if (decodeExt) {
      return decodeExt(data, type, context);
    } else {
      return new ExtData(type, data);
    }
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/typedArrays.mjs
function isArrayBufferLike(buffer) {
  return buffer instanceof ArrayBuffer || typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
}
function ensureUint8Array(buffer) {
  if (buffer instanceof Uint8Array) {
    return buffer;
  } else if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } else if (isArrayBufferLike(buffer)) {
    return new Uint8Array(buffer);
  } else {
    return Uint8Array.from(buffer);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/Encoder.mjs
var DEFAULT_MAX_DEPTH = 100;
var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
var Encoder = class _Encoder {
  extensionCodec;
  context;
  useBigInt64;
  maxDepth;
  initialBufferSize;
  sortKeys;
  forceFloat32;
  ignoreUndefined;
  forceIntegerToFloat;
  pos;
  view;
  bytes;
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.initialBufferSize = options?.initialBufferSize ?? DEFAULT_INITIAL_BUFFER_SIZE;
    this.sortKeys = options?.sortKeys ?? false;
    this.forceFloat32 = options?.forceFloat32 ?? false;
    this.ignoreUndefined = options?.ignoreUndefined ?? false;
    this.forceIntegerToFloat = options?.forceIntegerToFloat ?? false;
    this.pos = 0;
    this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
    this.bytes = new Uint8Array(this.view.buffer);
  }
  clone() {
    return new _Encoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      maxDepth: this.maxDepth,
      initialBufferSize: this.initialBufferSize,
      sortKeys: this.sortKeys,
      forceFloat32: this.forceFloat32,
      ignoreUndefined: this.ignoreUndefined,
      forceIntegerToFloat: this.forceIntegerToFloat
    });
  }
  reinitializeState() {
    this.pos = 0;
  }
  /**
   * This is almost equivalent to {@link Encoder#encode}, but it returns an reference of the encoder's internal buffer and thus much faster than {@link Encoder#encode}.
   *
   * @returns Encodes the object and returns a shared reference the encoder's internal buffer.
   */
  encodeSharedRef(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encodeSharedRef(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.subarray(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  /**
   * @returns Encodes the object and returns a copy of the encoder's internal buffer.
   */
  encode(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encode(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.slice(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  doEncode(object, depth) {
    if (depth > this.maxDepth) {
      throw new Error(`Too deep objects in depth ${depth}`);
    }
    if (object == null) {
      this.encodeNil();
    } else if (typeof object === "boolean") {
      this.encodeBoolean(object);
    } else if (typeof object === "number") {
      if (!this.forceIntegerToFloat) {
        this.encodeNumber(object);
      } else {
        this.encodeNumberAsFloat(object);
      }
    } else if (typeof object === "string") {
      this.encodeString(object);
    } else if (this.useBigInt64 && typeof object === "bigint") {
      this.encodeBigInt64(object);
    } else {
      this.encodeObject(object, depth);
    }
  }
  ensureBufferSizeToWrite(sizeToWrite) {
    const requiredSize = this.pos + sizeToWrite;
    if (this.view.byteLength < requiredSize) {
      this.resizeBuffer(requiredSize * 2);
    }
  }
  resizeBuffer(newSize) {
    const newBuffer = new ArrayBuffer(newSize);
    const newBytes = new Uint8Array(newBuffer);
    const newView = new DataView(newBuffer);
    newBytes.set(this.bytes);
    this.view = newView;
    this.bytes = newBytes;
  }
  encodeNil() {
    this.writeU8(192);
  }
  encodeBoolean(object) {
    if (object === false) {
      this.writeU8(194);
    } else {
      this.writeU8(195);
    }
  }
  encodeNumber(object) {
    if (!this.forceIntegerToFloat && Number.isSafeInteger(object)) {
      if (object >= 0) {
        if (object < 128) {
          this.writeU8(object);
        } else if (object < 256) {
          this.writeU8(204);
          this.writeU8(object);
        } else if (object < 65536) {
          this.writeU8(205);
          this.writeU16(object);
        } else if (object < 4294967296) {
          this.writeU8(206);
          this.writeU32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(207);
          this.writeU64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      } else {
        if (object >= -32) {
          this.writeU8(224 | object + 32);
        } else if (object >= -128) {
          this.writeU8(208);
          this.writeI8(object);
        } else if (object >= -32768) {
          this.writeU8(209);
          this.writeI16(object);
        } else if (object >= -2147483648) {
          this.writeU8(210);
          this.writeI32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(211);
          this.writeI64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      }
    } else {
      this.encodeNumberAsFloat(object);
    }
  }
  encodeNumberAsFloat(object) {
    if (this.forceFloat32) {
      this.writeU8(202);
      this.writeF32(object);
    } else {
      this.writeU8(203);
      this.writeF64(object);
    }
  }
  encodeBigInt64(object) {
    if (object >= BigInt(0)) {
      this.writeU8(207);
      this.writeBigUint64(object);
    } else {
      this.writeU8(211);
      this.writeBigInt64(object);
    }
  }
  writeStringHeader(byteLength) {
    if (byteLength < 32) {
      this.writeU8(160 + byteLength);
    } else if (byteLength < 256) {
      this.writeU8(217);
      this.writeU8(byteLength);
    } else if (byteLength < 65536) {
      this.writeU8(218);
      this.writeU16(byteLength);
    } else if (byteLength < 4294967296) {
      this.writeU8(219);
      this.writeU32(byteLength);
    } else {
      throw new Error(`Too long string: ${byteLength} bytes in UTF-8`);
    }
  }
  encodeString(object) {
    const maxHeaderSize = 1 + 4;
    const byteLength = utf8Count(object);
    this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
    this.writeStringHeader(byteLength);
    utf8Encode(object, this.bytes, this.pos);
    this.pos += byteLength;
  }
  encodeObject(object, depth) {
    const ext = this.extensionCodec.tryToEncode(object, this.context);
    if (ext != null) {
      this.encodeExtension(ext);
    } else if (Array.isArray(object)) {
      this.encodeArray(object, depth);
    } else if (ArrayBuffer.isView(object)) {
      this.encodeBinary(object);
    } else if (typeof object === "object") {
      this.encodeMap(object, depth);
    } else {
      throw new Error(`Unrecognized object: ${Object.prototype.toString.apply(object)}`);
    }
  }
  encodeBinary(object) {
    const size = object.byteLength;
    if (size < 256) {
      this.writeU8(196);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(197);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(198);
      this.writeU32(size);
    } else {
      throw new Error(`Too large binary: ${size}`);
    }
    const bytes = ensureUint8Array(object);
    this.writeU8a(bytes);
  }
  encodeArray(object, depth) {
    const size = object.length;
    if (size < 16) {
      this.writeU8(144 + size);
    } else if (size < 65536) {
      this.writeU8(220);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(221);
      this.writeU32(size);
    } else {
      throw new Error(`Too large array: ${size}`);
    }
    for (const item of object) {
      this.doEncode(item, depth + 1);
    }
  }
  countWithoutUndefined(object, keys) {
    let count = 0;
    for (const key of keys) {
      if (object[key] !== void 0) {
        count++;
      }
    }
    return count;
  }
  encodeMap(object, depth) {
    const keys = Object.keys(object);
    if (this.sortKeys) {
      keys.sort();
    }
    const size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
    if (size < 16) {
      this.writeU8(128 + size);
    } else if (size < 65536) {
      this.writeU8(222);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(223);
      this.writeU32(size);
    } else {
      throw new Error(`Too large map object: ${size}`);
    }
    for (const key of keys) {
      const value = object[key];
      if (!(this.ignoreUndefined && value === void 0)) {
        this.encodeString(key);
        this.doEncode(value, depth + 1);
      }
    }
  }
  encodeExtension(ext) {
    if (typeof ext.data === "function") {
      const data = ext.data(this.pos + 6);
      const size2 = data.length;
      if (size2 >= 4294967296) {
        throw new Error(`Too large extension object: ${size2}`);
      }
      this.writeU8(201);
      this.writeU32(size2);
      this.writeI8(ext.type);
      this.writeU8a(data);
      return;
    }
    const size = ext.data.length;
    if (size === 1) {
      this.writeU8(212);
    } else if (size === 2) {
      this.writeU8(213);
    } else if (size === 4) {
      this.writeU8(214);
    } else if (size === 8) {
      this.writeU8(215);
    } else if (size === 16) {
      this.writeU8(216);
    } else if (size < 256) {
      this.writeU8(199);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(200);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(201);
      this.writeU32(size);
    } else {
      throw new Error(`Too large extension object: ${size}`);
    }
    this.writeI8(ext.type);
    this.writeU8a(ext.data);
  }
  writeU8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setUint8(this.pos, value);
    this.pos++;
  }
  writeU8a(values) {
    const size = values.length;
    this.ensureBufferSizeToWrite(size);
    this.bytes.set(values, this.pos);
    this.pos += size;
  }
  writeI8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setInt8(this.pos, value);
    this.pos++;
  }
  writeU16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }
  writeI16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setInt16(this.pos, value);
    this.pos += 2;
  }
  writeU32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }
  writeI32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setInt32(this.pos, value);
    this.pos += 4;
  }
  writeF32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setFloat32(this.pos, value);
    this.pos += 4;
  }
  writeF64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setFloat64(this.pos, value);
    this.pos += 8;
  }
  writeU64(value) {
    this.ensureBufferSizeToWrite(8);
    setUint64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeI64(value) {
    this.ensureBufferSizeToWrite(8);
    setInt64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeBigUint64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigUint64(this.pos, value);
    this.pos += 8;
  }
  writeBigInt64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigInt64(this.pos, value);
    this.pos += 8;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/prettyByte.mjs
function prettyByte(byte) {
  return `${byte < 0 ? "-" : ""}0x${Math.abs(byte).toString(16).padStart(2, "0")}`;
}

// node_modules/@msgpack/msgpack/dist.esm/CachedKeyDecoder.mjs
var DEFAULT_MAX_KEY_LENGTH = 16;
var DEFAULT_MAX_LENGTH_PER_KEY = 16;
var CachedKeyDecoder = class {
  hit = 0;
  miss = 0;
  caches;
  maxKeyLength;
  maxLengthPerKey;
  constructor(maxKeyLength = DEFAULT_MAX_KEY_LENGTH, maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY) {
    this.maxKeyLength = maxKeyLength;
    this.maxLengthPerKey = maxLengthPerKey;
    this.caches = [];
    for (let i = 0; i < this.maxKeyLength; i++) {
      this.caches.push([]);
    }
  }
  canBeCached(byteLength) {
    return byteLength > 0 && byteLength <= this.maxKeyLength;
  }
  find(bytes, inputOffset, byteLength) {
    const records = this.caches[byteLength - 1];
    FIND_CHUNK: for (const record of records) {
      const recordBytes = record.bytes;
      for (let j = 0; j < byteLength; j++) {
        if (recordBytes[j] !== bytes[inputOffset + j]) {
          continue FIND_CHUNK;
        }
      }
      return record.str;
    }
    return null;
  }
  store(bytes, value) {
    const records = this.caches[bytes.length - 1];
    const record = { bytes, str: value };
    if (records.length >= this.maxLengthPerKey) {
      records[Math.random() * records.length | 0] = record;
    } else {
      records.push(record);
    }
  }
  decode(bytes, inputOffset, byteLength) {
    const cachedValue = this.find(bytes, inputOffset, byteLength);
    if (cachedValue != null) {
      this.hit++;
      return cachedValue;
    }
    this.miss++;
    const str = utf8DecodeJs(bytes, inputOffset, byteLength);
    const slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
    this.store(slicedCopyOfBytes, str);
    return str;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/Decoder.mjs
var STATE_ARRAY = "array";
var STATE_MAP_KEY = "map_key";
var STATE_MAP_VALUE = "map_value";
var mapKeyConverter = (key) => {
  if (typeof key === "string" || typeof key === "number") {
    return key;
  }
  throw new DecodeError("The type of key must be string or number but " + typeof key);
};
var StackPool = class {
  stack = [];
  stackHeadPosition = -1;
  get length() {
    return this.stackHeadPosition + 1;
  }
  top() {
    return this.stack[this.stackHeadPosition];
  }
  pushArrayState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_ARRAY;
    state.position = 0;
    state.size = size;
    state.array = new Array(size);
  }
  pushMapState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_MAP_KEY;
    state.readCount = 0;
    state.size = size;
    state.map = {};
  }
  getUninitializedStateFromPool() {
    this.stackHeadPosition++;
    if (this.stackHeadPosition === this.stack.length) {
      const partialState = {
        type: void 0,
        size: 0,
        array: void 0,
        position: 0,
        readCount: 0,
        map: void 0,
        key: null
      };
      this.stack.push(partialState);
    }
    return this.stack[this.stackHeadPosition];
  }
  release(state) {
    const topStackState = this.stack[this.stackHeadPosition];
    if (topStackState !== state) {
      throw new Error("Invalid stack state. Released state is not on top of the stack.");
    }
    if (state.type === STATE_ARRAY) {
      const partialState = state;
      partialState.size = 0;
      partialState.array = void 0;
      partialState.position = 0;
      partialState.type = void 0;
    }
    if (state.type === STATE_MAP_KEY || state.type === STATE_MAP_VALUE) {
      const partialState = state;
      partialState.size = 0;
      partialState.map = void 0;
      partialState.readCount = 0;
      partialState.type = void 0;
    }
    this.stackHeadPosition--;
  }
  reset() {
    this.stack.length = 0;
    this.stackHeadPosition = -1;
  }
};
var HEAD_BYTE_REQUIRED = -1;
var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
try {
  EMPTY_VIEW.getInt8(0);
} catch (e) {
  if (!(e instanceof RangeError)) {
    throw new Error("This module is not supported in the current JavaScript engine because DataView does not throw RangeError on out-of-bounds access");
  }
}
var MORE_DATA = new RangeError("Insufficient data");
var sharedCachedKeyDecoder = new CachedKeyDecoder();
var Decoder = class _Decoder {
  extensionCodec;
  context;
  useBigInt64;
  rawStrings;
  maxStrLength;
  maxBinLength;
  maxArrayLength;
  maxMapLength;
  maxExtLength;
  keyDecoder;
  mapKeyConverter;
  totalPos = 0;
  pos = 0;
  view = EMPTY_VIEW;
  bytes = EMPTY_BYTES;
  headByte = HEAD_BYTE_REQUIRED;
  stack = new StackPool();
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.rawStrings = options?.rawStrings ?? false;
    this.maxStrLength = options?.maxStrLength ?? UINT32_MAX;
    this.maxBinLength = options?.maxBinLength ?? UINT32_MAX;
    this.maxArrayLength = options?.maxArrayLength ?? UINT32_MAX;
    this.maxMapLength = options?.maxMapLength ?? UINT32_MAX;
    this.maxExtLength = options?.maxExtLength ?? UINT32_MAX;
    this.keyDecoder = options?.keyDecoder !== void 0 ? options.keyDecoder : sharedCachedKeyDecoder;
    this.mapKeyConverter = options?.mapKeyConverter ?? mapKeyConverter;
  }
  clone() {
    return new _Decoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      rawStrings: this.rawStrings,
      maxStrLength: this.maxStrLength,
      maxBinLength: this.maxBinLength,
      maxArrayLength: this.maxArrayLength,
      maxMapLength: this.maxMapLength,
      maxExtLength: this.maxExtLength,
      keyDecoder: this.keyDecoder
    });
  }
  reinitializeState() {
    this.totalPos = 0;
    this.headByte = HEAD_BYTE_REQUIRED;
    this.stack.reset();
  }
  setBuffer(buffer) {
    const bytes = ensureUint8Array(buffer);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  appendBuffer(buffer) {
    if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
      this.setBuffer(buffer);
    } else {
      const remainingData = this.bytes.subarray(this.pos);
      const newData = ensureUint8Array(buffer);
      const newBuffer = new Uint8Array(remainingData.length + newData.length);
      newBuffer.set(remainingData);
      newBuffer.set(newData, remainingData.length);
      this.setBuffer(newBuffer);
    }
  }
  hasRemaining(size) {
    return this.view.byteLength - this.pos >= size;
  }
  createExtraByteError(posToShow) {
    const { view, pos } = this;
    return new RangeError(`Extra ${view.byteLength - pos} of ${view.byteLength} byte(s) found at buffer[${posToShow}]`);
  }
  /**
   * @throws {@link DecodeError}
   * @throws {@link RangeError}
   */
  decode(buffer) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decode(buffer);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      const object = this.doDecodeSync();
      if (this.hasRemaining(1)) {
        throw this.createExtraByteError(this.pos);
      }
      return object;
    } finally {
      this.entered = false;
    }
  }
  *decodeMulti(buffer) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMulti(buffer);
      return;
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      while (this.hasRemaining(1)) {
        yield this.doDecodeSync();
      }
    } finally {
      this.entered = false;
    }
  }
  async decodeAsync(stream) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decodeAsync(stream);
    }
    try {
      this.entered = true;
      let decoded = false;
      let object;
      for await (const buffer of stream) {
        if (decoded) {
          this.entered = false;
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        try {
          object = this.doDecodeSync();
          decoded = true;
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
      if (decoded) {
        if (this.hasRemaining(1)) {
          throw this.createExtraByteError(this.totalPos);
        }
        return object;
      }
      const { headByte, pos, totalPos } = this;
      throw new RangeError(`Insufficient data in parsing ${prettyByte(headByte)} at ${totalPos} (${pos} in the current buffer)`);
    } finally {
      this.entered = false;
    }
  }
  decodeArrayStream(stream) {
    return this.decodeMultiAsync(stream, true);
  }
  decodeStream(stream) {
    return this.decodeMultiAsync(stream, false);
  }
  async *decodeMultiAsync(stream, isArray) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMultiAsync(stream, isArray);
      return;
    }
    try {
      this.entered = true;
      let isArrayHeaderRequired = isArray;
      let arrayItemsLeft = -1;
      for await (const buffer of stream) {
        if (isArray && arrayItemsLeft === 0) {
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        if (isArrayHeaderRequired) {
          arrayItemsLeft = this.readArraySize();
          isArrayHeaderRequired = false;
          this.complete();
        }
        try {
          while (true) {
            yield this.doDecodeSync();
            if (--arrayItemsLeft === 0) {
              break;
            }
          }
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
    } finally {
      this.entered = false;
    }
  }
  doDecodeSync() {
    DECODE: while (true) {
      const headByte = this.readHeadByte();
      let object;
      if (headByte >= 224) {
        object = headByte - 256;
      } else if (headByte < 192) {
        if (headByte < 128) {
          object = headByte;
        } else if (headByte < 144) {
          const size = headByte - 128;
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte < 160) {
          const size = headByte - 144;
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else {
          const byteLength = headByte - 160;
          object = this.decodeString(byteLength, 0);
        }
      } else if (headByte === 192) {
        object = null;
      } else if (headByte === 194) {
        object = false;
      } else if (headByte === 195) {
        object = true;
      } else if (headByte === 202) {
        object = this.readF32();
      } else if (headByte === 203) {
        object = this.readF64();
      } else if (headByte === 204) {
        object = this.readU8();
      } else if (headByte === 205) {
        object = this.readU16();
      } else if (headByte === 206) {
        object = this.readU32();
      } else if (headByte === 207) {
        if (this.useBigInt64) {
          object = this.readU64AsBigInt();
        } else {
          object = this.readU64();
        }
      } else if (headByte === 208) {
        object = this.readI8();
      } else if (headByte === 209) {
        object = this.readI16();
      } else if (headByte === 210) {
        object = this.readI32();
      } else if (headByte === 211) {
        if (this.useBigInt64) {
          object = this.readI64AsBigInt();
        } else {
          object = this.readI64();
        }
      } else if (headByte === 217) {
        const byteLength = this.lookU8();
        object = this.decodeString(byteLength, 1);
      } else if (headByte === 218) {
        const byteLength = this.lookU16();
        object = this.decodeString(byteLength, 2);
      } else if (headByte === 219) {
        const byteLength = this.lookU32();
        object = this.decodeString(byteLength, 4);
      } else if (headByte === 220) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 221) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 222) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 223) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 196) {
        const size = this.lookU8();
        object = this.decodeBinary(size, 1);
      } else if (headByte === 197) {
        const size = this.lookU16();
        object = this.decodeBinary(size, 2);
      } else if (headByte === 198) {
        const size = this.lookU32();
        object = this.decodeBinary(size, 4);
      } else if (headByte === 212) {
        object = this.decodeExtension(1, 0);
      } else if (headByte === 213) {
        object = this.decodeExtension(2, 0);
      } else if (headByte === 214) {
        object = this.decodeExtension(4, 0);
      } else if (headByte === 215) {
        object = this.decodeExtension(8, 0);
      } else if (headByte === 216) {
        object = this.decodeExtension(16, 0);
      } else if (headByte === 199) {
        const size = this.lookU8();
        object = this.decodeExtension(size, 1);
      } else if (headByte === 200) {
        const size = this.lookU16();
        object = this.decodeExtension(size, 2);
      } else if (headByte === 201) {
        const size = this.lookU32();
        object = this.decodeExtension(size, 4);
      } else {
        throw new DecodeError(`Unrecognized type byte: ${prettyByte(headByte)}`);
      }
      this.complete();
      const stack = this.stack;
      while (stack.length > 0) {
        const state = stack.top();
        if (state.type === STATE_ARRAY) {
          state.array[state.position] = object;
          state.position++;
          if (state.position === state.size) {
            object = state.array;
            stack.release(state);
          } else {
            continue DECODE;
          }
        } else if (state.type === STATE_MAP_KEY) {
          if (object === "__proto__") {
            throw new DecodeError("The key __proto__ is not allowed");
          }
          state.key = this.mapKeyConverter(object);
          state.type = STATE_MAP_VALUE;
          continue DECODE;
        } else {
          state.map[state.key] = object;
          state.readCount++;
          if (state.readCount === state.size) {
            object = state.map;
            stack.release(state);
          } else {
            state.key = null;
            state.type = STATE_MAP_KEY;
            continue DECODE;
          }
        }
      }
      return object;
    }
  }
  readHeadByte() {
    if (this.headByte === HEAD_BYTE_REQUIRED) {
      this.headByte = this.readU8();
    }
    return this.headByte;
  }
  complete() {
    this.headByte = HEAD_BYTE_REQUIRED;
  }
  readArraySize() {
    const headByte = this.readHeadByte();
    switch (headByte) {
      case 220:
        return this.readU16();
      case 221:
        return this.readU32();
      default: {
        if (headByte < 160) {
          return headByte - 144;
        } else {
          throw new DecodeError(`Unrecognized array type byte: ${prettyByte(headByte)}`);
        }
      }
    }
  }
  pushMapState(size) {
    if (size > this.maxMapLength) {
      throw new DecodeError(`Max length exceeded: map length (${size}) > maxMapLengthLength (${this.maxMapLength})`);
    }
    this.stack.pushMapState(size);
  }
  pushArrayState(size) {
    if (size > this.maxArrayLength) {
      throw new DecodeError(`Max length exceeded: array length (${size}) > maxArrayLength (${this.maxArrayLength})`);
    }
    this.stack.pushArrayState(size);
  }
  decodeString(byteLength, headerOffset) {
    if (!this.rawStrings || this.stateIsMapKey()) {
      return this.decodeUtf8String(byteLength, headerOffset);
    }
    return this.decodeBinary(byteLength, headerOffset);
  }
  /**
   * @throws {@link RangeError}
   */
  decodeUtf8String(byteLength, headerOffset) {
    if (byteLength > this.maxStrLength) {
      throw new DecodeError(`Max length exceeded: UTF-8 byte length (${byteLength}) > maxStrLength (${this.maxStrLength})`);
    }
    if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
      throw MORE_DATA;
    }
    const offset = this.pos + headerOffset;
    let object;
    if (this.stateIsMapKey() && this.keyDecoder?.canBeCached(byteLength)) {
      object = this.keyDecoder.decode(this.bytes, offset, byteLength);
    } else {
      object = utf8Decode(this.bytes, offset, byteLength);
    }
    this.pos += headerOffset + byteLength;
    return object;
  }
  stateIsMapKey() {
    if (this.stack.length > 0) {
      const state = this.stack.top();
      return state.type === STATE_MAP_KEY;
    }
    return false;
  }
  /**
   * @throws {@link RangeError}
   */
  decodeBinary(byteLength, headOffset) {
    if (byteLength > this.maxBinLength) {
      throw new DecodeError(`Max length exceeded: bin length (${byteLength}) > maxBinLength (${this.maxBinLength})`);
    }
    if (!this.hasRemaining(byteLength + headOffset)) {
      throw MORE_DATA;
    }
    const offset = this.pos + headOffset;
    const object = this.bytes.subarray(offset, offset + byteLength);
    this.pos += headOffset + byteLength;
    return object;
  }
  decodeExtension(size, headOffset) {
    if (size > this.maxExtLength) {
      throw new DecodeError(`Max length exceeded: ext length (${size}) > maxExtLength (${this.maxExtLength})`);
    }
    const extType = this.view.getInt8(this.pos + headOffset);
    const data = this.decodeBinary(
      size,
      headOffset + 1
      /* extType */
    );
    return this.extensionCodec.decode(data, extType, this.context);
  }
  lookU8() {
    return this.view.getUint8(this.pos);
  }
  lookU16() {
    return this.view.getUint16(this.pos);
  }
  lookU32() {
    return this.view.getUint32(this.pos);
  }
  readU8() {
    const value = this.view.getUint8(this.pos);
    this.pos++;
    return value;
  }
  readI8() {
    const value = this.view.getInt8(this.pos);
    this.pos++;
    return value;
  }
  readU16() {
    const value = this.view.getUint16(this.pos);
    this.pos += 2;
    return value;
  }
  readI16() {
    const value = this.view.getInt16(this.pos);
    this.pos += 2;
    return value;
  }
  readU32() {
    const value = this.view.getUint32(this.pos);
    this.pos += 4;
    return value;
  }
  readI32() {
    const value = this.view.getInt32(this.pos);
    this.pos += 4;
    return value;
  }
  readU64() {
    const value = getUint64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readI64() {
    const value = getInt64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readU64AsBigInt() {
    const value = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return value;
  }
  readI64AsBigInt() {
    const value = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return value;
  }
  readF32() {
    const value = this.view.getFloat32(this.pos);
    this.pos += 4;
    return value;
  }
  readF64() {
    const value = this.view.getFloat64(this.pos);
    this.pos += 8;
    return value;
  }
};

// src/codec.ts
var ID_FIELDS = /* @__PURE__ */ new Set(["id", "before", "last_id", "peer_read"]);
var DecodeError2 = class extends Error {
  name = "DecodeError";
};
function normalise(value, key) {
  if (typeof value === "bigint") return key !== void 0 && ID_FIELDS.has(key) ? value.toString() : Number(value);
  if (typeof value === "number") return key !== void 0 && ID_FIELDS.has(key) && Number.isInteger(value) ? String(value) : value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = normalise(value[i], void 0);
    return value;
  }
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const obj = value;
    for (const k of Object.keys(obj)) obj[k] = normalise(obj[k], k);
  }
  return value;
}
function asFrame(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DecodeError2("frame is not a map");
  }
  const frame = normalise(value, void 0);
  if (typeof frame.t !== "string") throw new DecodeError2("frame has no string `t`");
  return frame;
}
function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new DecodeError2(`expected a binary frame on rdv.v1.msgpack, got ${typeof data}`);
}
var MsgpackCodec = class {
  name = "rdv.v1.msgpack";
  binary = true;
  encoder = new Encoder({ ignoreUndefined: true });
  // useBigInt64: a uint64 id must not pass through `number` on its way to a string
  decoder = new Decoder({ useBigInt64: true });
  encode(frame) {
    return this.encoder.encode(frame);
  }
  decode(data) {
    let value;
    try {
      value = this.decoder.decode(toBytes(data));
    } catch (err) {
      if (err instanceof DecodeError2) throw err;
      throw new DecodeError2(`undecodable msgpack frame: ${String(err)}`);
    }
    return asFrame(value);
  }
};
var JsonCodec = class {
  name = "rdv.v1.json";
  binary = false;
  encode(frame) {
    return JSON.stringify(frame);
  }
  decode(data) {
    if (typeof data !== "string") throw new DecodeError2(`expected a text frame on rdv.v1.json, got ${typeof data}`);
    let value;
    try {
      value = JSON.parse(data);
    } catch (err) {
      throw new DecodeError2(`undecodable JSON frame: ${String(err)}`);
    }
    return asFrame(value);
  }
};
function codecFor(subprotocol) {
  return subprotocol === "rdv.v1.json" ? new JsonCodec() : new MsgpackCodec();
}

// src/errors.ts
var RendezvousError = class extends Error {
  name = "RendezvousError";
};
var ServerError = class extends RendezvousError {
  name = "ServerError";
  code;
  /** How long the server asks you to wait before retrying (`rate_limited`, `unavailable`). */
  retryMs;
  frame;
  constructor(frame) {
    super(`${frame.code}: ${frame.msg}${frame.retry_ms != null ? ` (retry in ${frame.retry_ms} ms)` : ""}`);
    this.code = frame.code;
    this.retryMs = frame.retry_ms ?? void 0;
    this.frame = frame;
  }
  /** True for the codes where resending the same request later can succeed. */
  get retriable() {
    return RETRIABLE.has(this.code);
  }
};
var RETRIABLE = /* @__PURE__ */ new Set(["rate_limited", "unavailable", "internal"]);
var ConnectionClosedError = class extends RendezvousError {
  name = "ConnectionClosedError";
  /** The WebSocket close code, 1006 when the connection just dropped. */
  closeCode;
  reason;
  /** The `code` of the `error` frame the server sent before closing, e.g. `"unauthorized"`. */
  errorCode;
  /** True when the SDK stopped reconnecting because of this close. */
  fatal;
  constructor(closeCode, reason, options = {}) {
    super(
      options.message ?? `connection closed: code=${closeCode}${reason ? ` reason=${JSON.stringify(reason)}` : ""}` + (options.errorCode ? ` error=${options.errorCode}` : "")
    );
    this.closeCode = closeCode;
    this.reason = reason;
    this.errorCode = options.errorCode;
    this.fatal = options.fatal ?? false;
  }
};
var TimeoutError = class extends RendezvousError {
  name = "TimeoutError";
  c;
  constructor(message, c) {
    super(message);
    this.c = c;
  }
};
var NotConnectedError = class extends RendezvousError {
  name = "NotConnectedError";
};

// src/connection.ts
var OPEN = 1;
var HEARTBEAT_CLOSE = 4e3;
var Connection = class _Connection {
  /** Resolves once, when the socket is gone (never rejects). */
  closed;
  welcome;
  codec;
  ws;
  pending = /* @__PURE__ */ new Map();
  nextR = 1;
  lastSentAt = Date.now();
  lastError;
  closeInfo;
  settleClosed;
  heartbeat;
  constructor(ws, codec) {
    this.ws = ws;
    this.codec = codec;
    this.closed = new Promise((resolve) => this.settleClosed = resolve);
  }
  /**
   * Open and authenticate. Resolves after `welcome`; rejects with `ConnectionClosedError`
   * (its `closeCode`/`errorCode` say why: 4001 + `unauthorized` for a refused token) or
   * `TimeoutError` after `openTimeoutMs`.
   */
  static open(options) {
    const headers = options.auth === "header" ? { headers: { Authorization: `Bearer ${options.token}` } } : void 0;
    const ws = headers ? new options.WebSocket(options.url, [options.subprotocol], headers) : new options.WebSocket(options.url, [options.subprotocol]);
    ws.binaryType = "arraybuffer";
    const conn = new _Connection(ws, codecFor(options.subprotocol));
    return conn.handshake(options);
  }
  handshake(options) {
    const ws = this.ws;
    let codec = this.codec;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (error) => {
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
        this.codec = codec;
        if (options.auth === "frame") this.write({ t: "auth", token: options.token });
      };
      ws.onmessage = (event) => {
        let frame;
        try {
          frame = codec.decode(event.data);
        } catch (error) {
          if (error instanceof DecodeError2) options.onDecodeError(error);
          return;
        }
        if (this.welcome === void 0) {
          if (frame.t === "welcome") {
            this.welcome = frame;
            settled = true;
            clearTimeout(timer);
            resolve(this);
          } else if (frame.t === "error") {
            this.lastError = frame;
          }
          return;
        }
        this.dispatch(frame, options.onEvent);
      };
      ws.onerror = () => {
      };
      ws.onclose = (event) => {
        this.finish(event.code ?? 1006, event.reason ?? "");
        const info = this.closeInfo;
        fail(
          new ConnectionClosedError(info.code, info.reason, {
            errorCode: info.error?.code,
            message: info.error ? `connection refused: close ${info.code}, ${info.error.code}: ${info.error.msg}` : void 0
          })
        );
      };
    });
  }
  dispatch(frame, onEvent) {
    const r = frame.r;
    if (typeof r === "number") {
      const pending = this.pending.get(r);
      if (pending !== void 0) {
        this.pending.delete(r);
        clearTimeout(pending.timer);
        if (frame.t === "error") pending.reject(new ServerError(frame));
        else pending.resolve(frame);
        return;
      }
    }
    if (frame.t === "error" && r == null) this.lastError = frame;
    onEvent(frame);
  }
  get isOpen() {
    return this.closeInfo === void 0 && this.ws.readyState === OPEN;
  }
  write(frame) {
    this.ws.send(this.codec.encode(frame));
    this.lastSentAt = Date.now();
  }
  /** Send a frame that gets no reply (`typing`, `read`, `delivered` without `r`). */
  post(frame) {
    if (!this.isOpen) throw new NotConnectedError(`cannot send ${frame.t}: not connected`);
    this.write(frame);
  }
  /**
   * Send `frame` with a fresh `r`; resolves with the reply carrying it. Rejects with
   * `ServerError` for an `error` reply, `ConnectionClosedError` if the socket ends first,
   * `TimeoutError` after `timeoutMs` (a reply after that is handed to `onEvent`).
   */
  request(frame, timeoutMs) {
    if (!this.isOpen) return Promise.reject(new NotConnectedError(`cannot send ${frame.t}: not connected`));
    const r = this.nextR++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(r);
        reject(new TimeoutError(`no reply to ${frame.t} (r=${r}) within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(r, { resolve, reject, timer });
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
  startHeartbeat(hbMs, timeoutMs) {
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
        (error) => {
          if (error instanceof TimeoutError) this.abandon(HEARTBEAT_CLOSE, "no pong: connection presumed dead");
        }
      );
    };
    this.heartbeat = setTimeout(tick, hbMs);
  }
  /** Close politely (the server sees `code`); `closed` resolves when the server answers. */
  close(code = 1e3, reason = "") {
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
  abandon(code, reason) {
    try {
      this.ws.close(code, reason);
    } catch {
    }
    this.ws.onmessage = null;
    this.finish(code, reason);
    this.ws.onclose?.({ code, reason });
    this.ws.onclose = null;
    this.ws.onopen = null;
  }
  finish(code, reason) {
    if (this.closeInfo !== void 0) return;
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
};

// src/emitter.ts
var TypedEmitter = class {
  listeners = /* @__PURE__ */ new Map();
  /** Called with what a listener threw; by default `console.error`. */
  onListenerError = (error, event) => {
    console.error(`rendezvous: a "${String(event)}" listener threw`, error);
  };
  /** Add a listener; returns a function that removes it. */
  on(event, listener) {
    let set = this.listeners.get(event);
    if (set === void 0) this.listeners.set(event, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => this.off(event, listener);
  }
  /** Add a listener that runs at most once. */
  once(event, listener) {
    const off = this.on(event, ((...args) => {
      off();
      listener(...args);
    }));
    return off;
  }
  off(event, listener) {
    this.listeners.get(event)?.delete(listener);
  }
  /** Resolves with the arguments of the next `event` that satisfies `filter`. */
  next(event, filter) {
    return new Promise((resolve) => {
      const off = this.on(event, ((...args) => {
        if (filter !== void 0 && !filter(...args)) return;
        off();
        resolve(args);
      }));
    });
  }
  emit(event, ...args) {
    const set = this.listeners.get(event);
    if (set === void 0) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }
};

// src/ids.ts
function compareIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}
function maxId(a, b) {
  if (a === void 0) return b;
  if (b === void 0) return a;
  return compareIds(a, b) >= 0 ? a : b;
}

// src/seen.ts
var SeenIds = class {
  constructor(capacity) {
    this.capacity = capacity;
  }
  capacity;
  ids = /* @__PURE__ */ new Set();
  /** True the first time `id` is offered, false for a repeat. */
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next();
      if (!oldest.done) this.ids.delete(oldest.value);
    }
    return true;
  }
  has(id) {
    return this.ids.has(id);
  }
};

// src/client.ts
function newClientId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
function asRendezvousError(error) {
  return error instanceof RendezvousError ? error : new RendezvousError(String(error));
}
var RendezvousClient = class extends TypedEmitter {
  url;
  token;
  subprotocol;
  auth;
  WebSocketImpl;
  syncOnConnect;
  refreshLeadMs;
  requestTimeoutMs;
  sendTimeoutMs;
  openTimeoutMs;
  backoff;
  seen;
  stateValue = "idle";
  conn;
  welcomeValue;
  cursorValue;
  exp = 0;
  stopped = true;
  /** Bumped by every connect(): a reconnect loop from before a close() must not go on. */
  generation = 0;
  lastToken;
  reconnectAfterMs;
  syncing;
  refreshTimer;
  sleeper;
  opening;
  outbox = /* @__PURE__ */ new Map();
  receipts = /* @__PURE__ */ new Map();
  constructor(options) {
    super();
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (WebSocketImpl === void 0) {
      throw new TypeError(
        "no global WebSocket here (Node 20 has one only with --experimental-websocket): pass one, e.g. `WebSocket` from the `ws` package"
      );
    }
    if ((options.auth ?? "frame") === "header" && options.WebSocket === void 0) {
      throw new TypeError('auth: "header" needs a `WebSocket` option that takes { headers } (the `ws` package)');
    }
    this.url = options.url;
    this.token = options.token;
    this.subprotocol = options.subprotocol ?? "rdv.v1.msgpack";
    this.auth = options.auth ?? "frame";
    this.WebSocketImpl = WebSocketImpl;
    this.cursorValue = options.cursor;
    this.syncOnConnect = options.syncOnConnect ?? true;
    this.refreshLeadMs = options.refreshLeadMs ?? 6e4;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 1e4;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 6e4;
    this.openTimeoutMs = options.openTimeoutMs ?? 1e4;
    this.backoff = new Backoff(options.reconnect);
    this.seen = new SeenIds(options.dedupeWindow ?? 5e3);
  }
  // -- state ------------------------------------------------------------------------------
  get state() {
    return this.stateValue;
  }
  /** The `welcome` of the current (or last) connection. */
  get welcome() {
    return this.welcomeValue;
  }
  /** The user id, once connected. */
  get user() {
    return this.welcomeValue?.user;
  }
  /** The cursor of the last completed sync page: store it to resume after a restart. */
  get cursor() {
    return this.cursorValue;
  }
  /** Sends not acked yet, by client id. */
  get pendingSends() {
    return [...this.outbox.keys()];
  }
  setState(state) {
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
  connect() {
    if (this.stateValue === "open" && this.welcomeValue) return Promise.resolve(this.welcomeValue);
    if (this.opening) return this.opening.promise;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
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
  async close() {
    if (this.stateValue === "closed" || this.stateValue === "idle") return;
    this.stopped = true;
    this.sleeper?.();
    clearTimeout(this.refreshTimer);
    const conn = this.conn;
    this.conn = void 0;
    if (conn) {
      conn.close(CLOSE.NORMAL, "client closing");
      let timer;
      const late = new Promise((resolve) => timer = setTimeout(resolve, 2e3));
      await Promise.race([conn.closed, late]);
      clearTimeout(timer);
      conn.abandon(CLOSE.NORMAL, "client closing");
    }
    this.finish(void 0, new NotConnectedError("client closed"));
  }
  finish(error, sendError) {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    for (const pending of [...this.outbox.values()]) this.failSend(pending, sendError);
    this.receipts.clear();
    this.opening?.reject(error ?? sendError);
    this.opening = void 0;
    this.setState("closed");
    this.emit("closed", error);
  }
  stopFatal(error) {
    this.conn?.close(CLOSE.NORMAL, "client stopping");
    this.conn = void 0;
    this.finish(error, error);
  }
  /** The reconnect loop: one iteration per connection attempt. */
  async run(gen) {
    const alive = () => !this.stopped && this.generation === gen;
    let refused;
    let first = true;
    while (alive()) {
      this.setState(first ? "connecting" : "reconnecting");
      first = false;
      let token;
      try {
        token = typeof this.token === "string" ? this.token : await this.token();
      } catch (error) {
        this.emit("error", new RendezvousError(`token provider failed: ${String(error)}`));
        await this.sleep(this.backoff.next());
        continue;
      }
      if (!alive()) return;
      if (refused !== void 0 && token === refused) {
        this.stopFatal(
          new ConnectionClosedError(CLOSE.UNAUTHORIZED, "unauthorized", {
            errorCode: "unauthorized",
            fatal: true,
            message: "the server refused the token (4001) and no other token is available"
          })
        );
        return;
      }
      this.lastToken = token;
      let conn;
      try {
        conn = await Connection.open({
          url: this.url,
          token,
          subprotocol: this.subprotocol,
          auth: this.auth,
          WebSocket: this.WebSocketImpl,
          openTimeoutMs: this.openTimeoutMs,
          onEvent: (frame) => this.onFrame(frame),
          onDecodeError: (error) => this.emit("error", error)
        });
      } catch (error) {
        if (!alive()) return;
        const info2 = error instanceof ConnectionClosedError ? { code: error.closeCode, reason: error.reason, error: void 0 } : { code: CLOSE.ABNORMAL, reason: String(error), error: void 0 };
        if (info2.code === CLOSE.UNAUTHORIZED) refused = token;
        const errorCode = error instanceof ConnectionClosedError ? error.errorCode : void 0;
        if (!await this.afterClose(info2, errorCode, false, error instanceof Error ? error.message : String(error), alive)) return;
        continue;
      }
      if (!alive()) {
        conn.close(CLOSE.NORMAL, "client closing");
        return;
      }
      refused = void 0;
      this.adopt(conn);
      const info = await conn.closed;
      if (this.conn === conn) this.conn = void 0;
      clearTimeout(this.refreshTimer);
      if (!alive()) return;
      if (info.code === CLOSE.UNAUTHORIZED) refused = this.lastToken;
      if (!await this.afterClose(info, info.error?.code, true, void 0, alive)) return;
    }
  }
  /** Decide on a close: false if the client stopped for good, else true after the delay. */
  async afterClose(info, errorCode, wasOpen, message, alive) {
    let action = closeAction(info.code, info.reason);
    if (info.code === CLOSE.UNAUTHORIZED && typeof this.token === "string") {
      action = { kind: "stop", why: "token refused and no token provider to get another" };
    }
    if (action.kind === "stop") {
      this.stopFatal(
        new ConnectionClosedError(info.code, info.reason, {
          errorCode: errorCode ?? info.error?.code,
          fatal: true,
          message: `${message ?? `connection closed: code=${info.code} reason=${JSON.stringify(info.reason)}`} (not reconnecting: ${action.why})`
        })
      );
      return false;
    }
    const delay = this.delayFor(action.window);
    this.setState("reconnecting");
    this.emit("disconnected", { code: info.code, reason: info.reason, error: info.error, wasOpen, reconnectInMs: delay });
    await this.sleep(delay);
    return alive();
  }
  delayFor(window) {
    if (window === "restart") {
      const after = this.reconnectAfterMs;
      this.reconnectAfterMs = void 0;
      return after ?? this.backoff.between(500, 5e3);
    }
    return window === "slow" ? this.backoff.next(5e3) : this.backoff.next();
  }
  sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.sleeper === done) this.sleeper = void 0;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeper = done;
    });
  }
  /** A connection got its `welcome`: make it the current one and catch up. */
  adopt(conn) {
    const welcome = conn.welcome;
    this.conn = conn;
    this.welcomeValue = welcome;
    this.exp = welcome.exp;
    this.setState("open");
    this.emit("welcome", welcome);
    this.opening?.resolve(welcome);
    this.opening = void 0;
    if (welcome.hb > 0) conn.startHeartbeat(welcome.hb * 1e3, this.requestTimeoutMs);
    this.scheduleRefresh(conn);
    for (const receipt of this.receipts.values()) conn.post({ ...receipt });
    this.receipts.clear();
    for (const pending of this.outbox.values()) this.trySend(pending);
    if (this.syncOnConnect) {
      this.syncWith(conn).then(
        () => this.backoff.reset(),
        (error) => {
          if (!(error instanceof ConnectionClosedError)) this.emit("error", asRendezvousError(error));
        }
      );
    } else {
      this.backoff.reset();
    }
  }
  // -- incoming ---------------------------------------------------------------------------
  onFrame(frame) {
    switch (frame.t) {
      case "msg":
        this.deliver(frame, "live");
        return;
      case "typing":
        this.emit("typing", frame);
        return;
      case "read":
      case "delivered":
        this.emit(frame.t, frame);
        return;
      case "presence":
        this.emit("presence", frame);
        return;
      case "match":
        this.emit("match", frame);
        return;
      case "unmatch":
        this.emit("unmatch", frame);
        return;
      case "unsent":
        this.emit("unsent", frame);
        return;
      case "reconnect":
        this.reconnectAfterMs = frame.after_ms;
        return;
      case "ack": {
        const ack = frame;
        const pending = this.outbox.get(ack.c);
        if (pending) this.settleSend(pending, ack);
        return;
      }
      case "error":
        this.emit("error", new ServerError(frame));
        return;
      default:
        return;
    }
  }
  deliver(msg, source) {
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
  send(m, content, options = {}) {
    const c = options.c ?? newClientId();
    const existing = this.outbox.get(c);
    if (existing) return existing.promise;
    if (this.stopped) return Promise.reject(new NotConnectedError("client is not connected: call connect() first"));
    const frame = { t: "send", m, c };
    if (content.body !== void 0) frame.body = content.body;
    if (content.media !== void 0) frame.media = content.media;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timeoutMs = options.timeoutMs ?? this.sendTimeoutMs;
    const pending = {
      c,
      frame,
      promise,
      resolve,
      reject,
      inFlight: false,
      attempts: 0,
      retryTimer: void 0,
      deadline: setTimeout(
        () => this.failSend(pending, new TimeoutError(`send ${c} not acknowledged within ${timeoutMs} ms; resend with the same c`, c)),
        timeoutMs
      )
    };
    this.outbox.set(c, pending);
    this.trySend(pending);
    return promise;
  }
  trySend(pending) {
    const conn = this.conn;
    if (conn === void 0 || !conn.isOpen || pending.inFlight || !this.outbox.has(pending.c)) return;
    clearTimeout(pending.retryTimer);
    pending.retryTimer = void 0;
    pending.inFlight = true;
    pending.attempts++;
    conn.request(pending.frame, this.requestTimeoutMs).then(
      (ack) => this.settleSend(pending, ack),
      (error) => {
        pending.inFlight = false;
        if (!this.outbox.has(pending.c)) return;
        if (error instanceof ServerError) {
          if (!error.retriable) {
            this.failSend(pending, error);
            return;
          }
          const delay = error.retryMs ?? Math.floor(Math.random() * Math.min(3e4, 500 * 2 ** pending.attempts));
          pending.retryTimer = setTimeout(() => this.trySend(pending), delay);
        } else if (error instanceof TimeoutError) {
          this.trySend(pending);
        }
      }
    );
  }
  settleSend(pending, ack) {
    if (this.outbox.get(pending.c) !== pending) return;
    this.outbox.delete(pending.c);
    clearTimeout(pending.deadline);
    clearTimeout(pending.retryTimer);
    this.seen.add(ack.id);
    pending.resolve(ack);
  }
  failSend(pending, error) {
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
  typing(m, on) {
    const conn = this.conn;
    if (conn === void 0 || !conn.isOpen) return false;
    conn.post({ t: "typing", m, on });
    return true;
  }
  /** The user has read everything up to and including `id` (see `receipt`). */
  read(m, id, options = {}) {
    return this.receipt("read", m, id, options.confirm ?? false);
  }
  /** The device holds everything up to and including `id` (see `receipt`). */
  delivered(m, id, options = {}) {
    return this.receipt("delivered", m, id, options.confirm ?? false);
  }
  /**
   * Receipts are cumulative ("up to `id`"), so while offline only the newest per match and
   * kind is kept and sent after the reconnect. With `confirm`, waits for the server's `ok`.
   */
  async receipt(t, m, id, confirm) {
    if (confirm) {
      const conn2 = await this.whenOpen();
      await conn2.request({ t, m, id }, this.requestTimeoutMs);
      return;
    }
    const conn = this.conn;
    if (conn !== void 0 && conn.isOpen) {
      conn.post({ t, m, id });
      return;
    }
    const key = `${t}\0${m}`;
    const held = this.receipts.get(key);
    if (held === void 0 || compareIds(id, held.id) > 0) this.receipts.set(key, { t, m, id });
  }
  // -- requests ---------------------------------------------------------------------------
  /** Which of my matches are online (only matches are ever reported). */
  async presence() {
    const conn = await this.whenOpen();
    const reply = await conn.request({ t: "presence" }, this.requestTimeoutMs);
    return reply.users;
  }
  /**
   * Unsend one of my own messages (within the server's `unsend_window_s`, 15 min by
   * default): it becomes a tombstone (`deleted: true`) in history and sync, and both
   * members' other devices get an `unsent` event. Rejects with `forbidden` (not mine, or
   * too late) or `not_found`.
   */
  async unsend(m, id) {
    const conn = await this.whenOpen();
    await conn.request({ t: "unsend", m, id }, this.requestTimeoutMs);
  }
  /** Older messages of one match, newest first; page with `before` = the oldest id received. */
  async history(m, options = {}) {
    const conn = await this.whenOpen();
    const frame = { t: "history", m };
    if (options.before !== void 0) frame.before = options.before;
    if (options.limit !== void 0) frame.limit = options.limit;
    return conn.request(frame, this.requestTimeoutMs);
  }
  /** Catch up now from the stored cursor (done by itself after every connect). */
  async sync() {
    await this.syncWith(await this.whenOpen());
  }
  /** Round trip to the server (also done by itself as the heartbeat). */
  async ping() {
    const conn = await this.whenOpen();
    await conn.request({ t: "ping" }, this.requestTimeoutMs);
  }
  /** Page through `sync` from the cursor; one at a time, concurrent callers share it. */
  syncWith(conn) {
    if (this.syncing) return this.syncing;
    const run = async () => {
      let delivered = 0;
      const convs = [];
      for (; ; ) {
        const frame = { t: "sync" };
        if (this.cursorValue !== void 0) frame.since = this.cursorValue;
        const reply = await conn.request(frame, this.requestTimeoutMs);
        for (const msg of reply.msgs ?? []) if (this.deliver(msg, "sync")) delivered++;
        convs.push(...reply.convs ?? []);
        this.cursorValue = reply.cursor;
        this.emit("cursor", reply.cursor);
        if (!reply.more) break;
      }
      this.emit("synced", { cursor: this.cursorValue, convs, delivered });
    };
    this.syncing = run().finally(() => {
      this.syncing = void 0;
    });
    return this.syncing;
  }
  /** The current connection, waiting for one (up to the request timeout) while reconnecting. */
  whenOpen() {
    const conn = this.conn;
    if (conn !== void 0 && conn.isOpen) return Promise.resolve(conn);
    if (this.stopped) return Promise.reject(new NotConnectedError("client is not connected: call connect() first"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        offWelcome();
        offClosed();
        reject(new TimeoutError(`not connected within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      const offWelcome = this.on("welcome", () => {
        clearTimeout(timer);
        offWelcome();
        offClosed();
        resolve(this.conn);
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
  scheduleRefresh(conn) {
    clearTimeout(this.refreshTimer);
    if (typeof this.token === "string") return;
    const remaining = this.exp * 1e3 - Date.now();
    this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.max(remaining - this.refreshLeadMs, 1e3));
  }
  async refresh(conn) {
    if (conn !== this.conn || !conn.isOpen || typeof this.token === "string") return;
    try {
      const token = await this.token();
      const ok = await conn.request({ t: "refresh", token }, this.requestTimeoutMs);
      if (conn !== this.conn) return;
      this.lastToken = token;
      const exp = ok.exp ?? 0;
      if (exp > this.exp) {
        this.exp = exp;
        this.emit("tokenRefreshed", exp);
        this.scheduleRefresh(conn);
      } else {
        this.emit("error", new RendezvousError(`the token provider returned a token that does not expire later (exp ${exp})`));
      }
    } catch (error) {
      if (conn !== this.conn) return;
      this.emit("error", asRendezvousError(error));
      const remaining = this.exp * 1e3 - Date.now();
      if (remaining > 2e3) this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(1e4, remaining / 2));
    }
  }
};

// src/frames.ts
var MSGPACK = "rdv.v1.msgpack";
var JSON_SUBPROTOCOL = "rdv.v1.json";
export {
  Backoff,
  CLOSE,
  ConnectionClosedError,
  DecodeError2 as DecodeError,
  JSON_SUBPROTOCOL,
  MSGPACK,
  NotConnectedError,
  RETRIABLE,
  RendezvousClient,
  RendezvousError,
  ServerError,
  TimeoutError,
  TypedEmitter,
  closeAction,
  codecFor,
  compareIds,
  maxId
};
