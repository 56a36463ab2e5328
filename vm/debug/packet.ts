/**
 * gdb Remote Serial Protocol framing (gdb manual, "Overview" of the remote protocol): packets
 * `$body#cc` with a two-digit modulo-256 checksum, `+`/`-` acknowledgements, the interrupt byte 0x03 sent
 * between packets, and the escaping of binary data (`}` then the byte XOR 0x20, for `#`, `$`, `}` and `*`).
 * gdb never run-length encodes what it sends, so incoming `*` needs no decoding; the stub never
 * run-length encodes either.
 *
 * @module
 */

/** Largest packet body accepted or sent (advertised to gdb as `PacketSize`). */
export const MAX_PACKET = 0x4000;
/** The byte gdb sends to interrupt a running target (Ctrl-C). */
export const INTERRUPT = 0x03;

const DOLLAR = 0x24, HASH = 0x23, ESCAPE = 0x7d, STAR = 0x2a, PLUS = 0x2b, MINUS = 0x2d;

/**
 * Sum of the bytes modulo 256: the packet checksum.
 *
 * @example
 * ```ts
 * import { checksum } from "./packet.ts";
 * console.log(checksum(new TextEncoder().encode("OK")).toString(16)); // "9a"
 * ```
 */
export function checksum(body: Uint8Array): number {
  let sum = 0;
  for (const b of body) sum = (sum + b) & 0xff;
  return sum;
}

/**
 * A string whose characters are bytes (U+0000..U+00FF), one character per byte. (`TextDecoder("latin1")`
 * is windows-1252 and would change 0x80..0x9F.)
 *
 * @example
 * ```ts
 * import { bytesToLatin1 } from "./packet.ts";
 * console.log(bytesToLatin1(new Uint8Array([0x67, 0x3f]))); // "g?"
 * ```
 */
export function bytesToLatin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

/**
 * The bytes of a string of characters U+0000..U+00FF; other characters become `?`.
 *
 * @example
 * ```ts
 * import { latin1ToBytes } from "./packet.ts";
 * console.log(latin1ToBytes("OK")); // Uint8Array(2) [79, 75]
 * ```
 */
export function latin1ToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out[i] = c <= 0xff ? c : 0x3f;
  }
  return out;
}

/**
 * Escapes binary data for a packet body: `#`, `$`, `}` and `*` become `}` followed by the byte XOR 0x20.
 *
 * @example
 * ```ts
 * import { escapeBinary } from "./packet.ts";
 * console.log(escapeBinary(new Uint8Array([0x23, 0x41]))); // Uint8Array(3) [125, 3, 65]
 * ```
 */
export function escapeBinary(data: Uint8Array): Uint8Array {
  let extra = 0;
  for (const b of data) if (b === HASH || b === DOLLAR || b === ESCAPE || b === STAR) extra++;
  const out = new Uint8Array(data.length + extra);
  let j = 0;
  for (const b of data) {
    if (b === HASH || b === DOLLAR || b === ESCAPE || b === STAR) {
      out[j++] = ESCAPE;
      out[j++] = b ^ 0x20;
    } else {
      out[j++] = b;
    }
  }
  return out;
}

/**
 * Undoes {@linkcode escapeBinary}; `undefined` when the data ends in a lone `}`.
 *
 * @example
 * ```ts
 * import { unescapeBinary } from "./packet.ts";
 * console.log(unescapeBinary(new Uint8Array([125, 3, 65]))); // Uint8Array(2) [35, 65]
 * ```
 */
export function unescapeBinary(data: Uint8Array): Uint8Array | undefined {
  const out = new Uint8Array(data.length);
  let j = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === ESCAPE) {
      if (++i === data.length) return undefined;
      out[j++] = data[i] ^ 0x20;
    } else {
      out[j++] = data[i];
    }
  }
  return out.slice(0, j);
}

/**
 * Frames a body (already escaped if binary) as `$body#cc`. A string body must be ASCII.
 *
 * @example
 * ```ts
 * import { bytesToLatin1, framePacket } from "./packet.ts";
 * console.log(bytesToLatin1(framePacket("OK"))); // "$OK#9a"
 * ```
 */
export function framePacket(body: Uint8Array | string): Uint8Array {
  const b = typeof body === "string" ? latin1ToBytes(body) : body;
  const out = new Uint8Array(b.length + 4);
  out[0] = DOLLAR;
  out.set(b, 1);
  out[b.length + 1] = HASH;
  const cs = checksum(b);
  out[b.length + 2] = HEX.charCodeAt(cs >> 4);
  out[b.length + 3] = HEX.charCodeAt(cs & 15);
  return out;
}

const HEX = "0123456789abcdef";

/**
 * Lower-case hex of bytes, two digits each.
 *
 * @example
 * ```ts
 * import { toHex } from "./packet.ts";
 * console.log(toHex(new Uint8Array([0, 0xab]))); // "00ab"
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b >> 4] + HEX[b & 15];
  return s;
}

/**
 * Bytes of an even-length hex string; `undefined` for anything else.
 *
 * @example
 * ```ts
 * import { fromHex } from "./packet.ts";
 * console.log(fromHex("00aB")); // Uint8Array(2) [0, 171]
 * console.log(fromHex("0")); // undefined
 * ```
 */
export function fromHex(s: string): Uint8Array | undefined {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return undefined;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * A hex number of at most 16 digits (a 64-bit value), or `undefined`.
 *
 * @example
 * ```ts
 * import { parseHex64 } from "./packet.ts";
 * console.log(parseHex64("ffffffffffffffff")); // 18446744073709551615n
 * console.log(parseHex64("1ffffffffffffffff")); // undefined
 * ```
 */
export function parseHex64(s: string): bigint | undefined {
  if (s.length === 0 || s.length > 16 || !/^[0-9a-fA-F]+$/.test(s)) return undefined;
  return BigInt(`0x${s}`);
}

/** What {@linkcode PacketReader} found in the incoming bytes. */
export type RspEvent =
  /** A packet; `body` is still escaped. */
  | { readonly kind: "packet"; readonly body: Uint8Array; readonly checksumOk: boolean }
  /** `+`: the last packet sent arrived. */
  | { readonly kind: "ack" }
  /** `-`: the last packet sent arrived damaged; send it again. */
  | { readonly kind: "nack" }
  /** 0x03 between packets: stop the target. */
  | { readonly kind: "interrupt" }
  /** A packet longer than {@linkcode MAX_PACKET}; its bytes were dropped. */
  | { readonly kind: "overlong" };

/**
 * Splits the incoming byte stream into {@linkcode RspEvent}s. Bytes between packets other than `+`, `-`,
 * `$` and 0x03 are ignored; a `$` inside a packet restarts it (as gdbserver does). Memory use is bounded
 * by {@linkcode MAX_PACKET}.
 *
 * @example
 * ```ts
 * import { latin1ToBytes, PacketReader } from "./packet.ts";
 * const r = new PacketReader();
 * r.push(latin1ToBytes("+$g#67\x03"));
 * console.log(r.next()?.kind, r.next()?.kind, r.next()?.kind, r.next()); // ack packet interrupt undefined
 * ```
 */
export class PacketReader {
  #state: "idle" | "body" | "cs1" | "cs2" = "idle";
  #body = new Uint8Array(256);
  #length = 0;
  #overlong = false;
  #cs = 0;
  #events: RspEvent[] = [];
  #head = 0;

  /** Feeds received bytes. */
  push(bytes: Uint8Array): void {
    for (const b of bytes) this.#byte(b);
  }

  /** The next complete event, or `undefined` until more bytes arrive. */
  next(): RspEvent | undefined {
    if (this.#head === this.#events.length) return undefined;
    const e = this.#events[this.#head++];
    if (this.#head === this.#events.length) {
      this.#events = [];
      this.#head = 0;
    }
    return e;
  }

  /** Whether {@linkcode next} has an event. */
  get pending(): boolean {
    return this.#head < this.#events.length;
  }

  #byte(b: number): void {
    switch (this.#state) {
      case "idle":
        if (b === DOLLAR) this.#start();
        else if (b === PLUS) this.#events.push({ kind: "ack" });
        else if (b === MINUS) this.#events.push({ kind: "nack" });
        else if (b === INTERRUPT) this.#events.push({ kind: "interrupt" });
        return;
      case "body":
        if (b === HASH) {
          this.#state = "cs1";
        } else if (b === DOLLAR) {
          this.#start();
        } else if (this.#length >= MAX_PACKET) {
          this.#overlong = true;
        } else {
          if (this.#length === this.#body.length) {
            const bigger = new Uint8Array(Math.min(this.#body.length * 2, MAX_PACKET));
            bigger.set(this.#body);
            this.#body = bigger;
          }
          this.#body[this.#length++] = b;
        }
        return;
      case "cs1":
        this.#cs = hexDigit(b) << 4;
        this.#state = "cs2";
        return;
      case "cs2": {
        this.#cs |= hexDigit(b);
        this.#state = "idle";
        if (this.#overlong) {
          this.#events.push({ kind: "overlong" });
          return;
        }
        const body = this.#body.slice(0, this.#length);
        this.#events.push({ kind: "packet", body, checksumOk: this.#cs === checksum(body) });
        return;
      }
    }
  }

  #start(): void {
    this.#state = "body";
    this.#length = 0;
    this.#overlong = false;
  }
}

/** Value of a hex digit byte; 0x100 (never a valid checksum half) for anything else. */
function hexDigit(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  return 0x100;
}
