/**
 * Byte-level mutations shared by the fuzzers: field writes with boundary values, bit flips, byte runs,
 * insertions, deletions, truncation, extension and splices. Every mutation returns a new array and a
 * human-readable description, which goes into the corpus next to a failing input.
 *
 * @module
 */
import type { Rng } from "./_rng.ts";

/** A mutated input and what was done to it. */
export interface Mutated {
  /** The mutated bytes (a fresh array). */
  bytes: Uint8Array;
  /** What was done, one entry per step. */
  ops: string[];
}

/** Unsigned maximum of a field width in bytes. */
export function maxOf(width: 1 | 2 | 4 | 8): bigint {
  return (1n << BigInt(width * 8)) - 1n;
}

/** Reads an unsigned little-endian integer. */
export function readUint(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8): bigint {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[offset + i] ?? 0);
  return v;
}

/** Writes an unsigned little-endian integer (truncated to the width) in place. */
export function writeUint(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: bigint): void {
  let v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width && offset + i < bytes.length; i++) {
    bytes[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * The boundary values worth trying in an unsigned field: 0, 1, max, max − 1, the top bit, page ± 1, the
 * file size ± 1, the original value ± 1 and ± a page, and doubled.
 */
export function interestingValues(width: 1 | 2 | 4 | 8, original: bigint, fileSize: number): bigint[] {
  const max = maxOf(width);
  const fs = BigInt(fileSize);
  const candidates = [
    0n,
    1n,
    2n,
    max,
    max - 1n,
    1n << BigInt(width * 8 - 1),
    (1n << BigInt(width * 8 - 1)) - 1n,
    4095n,
    4096n,
    4097n,
    fs - 1n,
    fs,
    fs + 1n,
    original - 1n,
    original + 1n,
    original - 4096n,
    original + 4096n,
    original * 2n,
    original ^ (1n << 31n),
    0xffffffffn,
    0x100000000n,
  ];
  const out: bigint[] = [];
  for (const c of candidates) {
    const v = BigInt.asUintN(width * 8, c);
    if (v !== original && !out.includes(v)) out.push(v);
  }
  return out;
}

/** A copy with a field set. */
export function withField(
  bytes: Uint8Array,
  offset: number,
  width: 1 | 2 | 4 | 8,
  value: bigint,
): Uint8Array {
  const out = bytes.slice();
  writeUint(out, offset, width, value);
  return out;
}

/** A copy cut to `length` bytes, or zero-extended to it. */
export function resized(bytes: Uint8Array, length: number, fill = 0): Uint8Array<ArrayBuffer> {
  if (length <= bytes.length) return bytes.slice(0, length);
  const out = new Uint8Array(length);
  out.set(bytes);
  if (fill !== 0) out.fill(fill, bytes.length);
  return out;
}

/** Where random mutations should land, and how often. */
export interface Region {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
  /** Relative weight. */
  weight: number;
}

function pickOffset(rng: Rng, length: number, regions?: readonly Region[]): number {
  if (length === 0) return 0;
  if (regions && regions.length > 0) {
    const r = rng.weighted(regions.map((x) => [x.weight, x] as const));
    const end = Math.min(r.end, length);
    if (end > r.start) return r.start + rng.int(end - r.start);
  }
  return rng.int(length);
}

/**
 * One to `maxOps` random byte-level mutations: bit flips, byte runs (zeros, 0xff, random), interesting
 * integers at random offsets, insertions, deletions, truncation and extension. `regions` biases where they
 * land.
 */
export function mutateRandom(
  rng: Rng,
  input: Uint8Array,
  options: { maxOps?: number; regions?: readonly Region[]; maxLength?: number } = {},
): Mutated {
  let bytes: Uint8Array<ArrayBuffer> = new Uint8Array(input);
  const ops: string[] = [];
  const n = 1 + rng.int(options.maxOps ?? 4);
  const maxLength = options.maxLength ?? input.length * 2 + 4096;
  for (let k = 0; k < n; k++) {
    const at = pickOffset(rng, bytes.length, options.regions);
    const kind = rng.weighted(
      [
        [30, "flip"],
        [15, "run"],
        [15, "int"],
        [8, "insert"],
        [8, "delete"],
        [4, "truncate"],
        [4, "extend"],
        [10, "byte"],
      ] as const,
    );
    switch (kind) {
      case "flip": {
        if (bytes.length === 0) break;
        const bit = rng.int(8);
        bytes[at] ^= 1 << bit;
        ops.push(`flip bit ${bit} at ${at}`);
        break;
      }
      case "byte": {
        if (bytes.length === 0) break;
        const v = rng.pick([0, 1, 0x7f, 0x80, 0xff, rng.int(256)]);
        bytes[at] = v;
        ops.push(`byte ${at} = ${v}`);
        break;
      }
      case "run": {
        const len = Math.min(rng.length(4096), bytes.length - at);
        const fill = rng.pick(["zero", "ff", "random"] as const);
        if (fill === "random") bytes.set(rng.bytes(len), at);
        else bytes.fill(fill === "zero" ? 0 : 0xff, at, at + len);
        ops.push(`run of ${len} ${fill} bytes at ${at}`);
        break;
      }
      case "int": {
        const width = rng.pick([1, 2, 4, 8] as const);
        if (at + width > bytes.length) break;
        const original = readUint(bytes, at, width);
        const v = rng.pick(interestingValues(width, original, input.length));
        writeUint(bytes, at, width, v);
        ops.push(`u${width * 8} at ${at} = ${v}`);
        break;
      }
      case "insert": {
        const len = 1 + rng.length(512);
        if (bytes.length + len > maxLength) break;
        const out = new Uint8Array(bytes.length + len);
        out.set(bytes.subarray(0, at));
        out.set(rng.chance(0.5) ? rng.bytes(len) : new Uint8Array(len), at);
        out.set(bytes.subarray(at), at + len);
        bytes = out;
        ops.push(`insert ${len} bytes at ${at}`);
        break;
      }
      case "delete": {
        const len = Math.min(1 + rng.length(512), bytes.length - at);
        if (len <= 0) break;
        const out = new Uint8Array(bytes.length - len);
        out.set(bytes.subarray(0, at));
        out.set(bytes.subarray(at + len), at);
        bytes = out;
        ops.push(`delete ${len} bytes at ${at}`);
        break;
      }
      case "truncate": {
        bytes = bytes.slice(0, at);
        ops.push(`truncate to ${at}`);
        break;
      }
      case "extend": {
        const len = 1 + rng.length(8192);
        if (bytes.length + len > maxLength) break;
        bytes = resized(bytes, bytes.length + len, rng.chance(0.5) ? 0 : 0xff);
        ops.push(`extend by ${len}`);
        break;
      }
    }
  }
  return { bytes, ops };
}

/** The first part of `a` up to a cut point and the rest of `b` from a (possibly different) cut point. */
export function splice(rng: Rng, a: Uint8Array, b: Uint8Array, cuts?: readonly number[]): Mutated {
  const cutA = cuts && rng.chance(0.7) ? Math.min(rng.pick(cuts), a.length) : rng.int(a.length + 1);
  const cutB = rng.chance(0.7) ? Math.min(cutA, b.length) : rng.int(b.length + 1);
  const out = new Uint8Array(cutA + (b.length - cutB));
  out.set(a.subarray(0, cutA));
  out.set(b.subarray(cutB), cutA);
  return { bytes: out, ops: [`splice a[0, ${cutA}) + b[${cutB}, ${b.length})`] };
}
