/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) for the fuzzers. Every fuzz case draws from
 * `caseRng(seed, index)`, so a case is reproducible from its seed and index alone, in any order.
 *
 * @module
 */

function splitmix32(state: number): [number, number] {
  state = (state + 0x9e3779b9) | 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [state, (z ^ (z >>> 16)) >>> 0];
}

/** Deterministic random numbers from a 32-bit seed. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** Seeds the generator; equal seeds give equal sequences. */
  constructor(seed: number) {
    let s = seed | 0;
    let v: number;
    [s, v] = splitmix32(s);
    this.#a = v;
    [s, v] = splitmix32(s);
    this.#b = v;
    [s, v] = splitmix32(s);
    this.#c = v;
    [, v] = splitmix32(s);
    this.#d = v;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform u32. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** A uniform integer in [0, n) (n ≥ 1, at most 2^32). */
  int(n: number): number {
    if (n <= 1) return 0;
    return Math.floor((this.u32() / 0x100000000) * n);
  }

  /** A uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** A uniform u64. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** An element chosen by weight: `[[weight, value], ...]`. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let x = this.int(total);
    for (const [w, v] of items) {
      if (x < w) return v;
      x -= w;
    }
    return items[items.length - 1][1];
  }

  /** n random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      out[i] = v;
      if (i + 1 < n) out[i + 1] = v >>> 8;
      if (i + 2 < n) out[i + 2] = v >>> 16;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }

  /** A small length, biased towards 0..16 with a long tail up to `max`. */
  length(max: number): number {
    const r = this.int(8);
    if (r < 4) return this.int(Math.min(17, max + 1));
    if (r < 7) return this.int(Math.min(257, max + 1));
    return this.int(max + 1);
  }
}

/** The generator for case `index` of a run seeded with `seed`. */
export function caseRng(seed: number, index: number): Rng {
  return new Rng(Math.imul(seed ^ 0x5bd1e995, 0x01000193) ^ Math.imul(index + 1, 0x9e3779b1));
}
