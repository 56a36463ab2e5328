/**
 * Timing helpers for the benchmark: sample, then median and p90 (nearest rank), in microseconds.
 *
 * @module
 */

/** Median and 90th percentile of a set of samples, in µs. */
export interface Stat {
  /** Number of samples. */
  n: number;
  /** Median, µs. */
  median: number;
  /** 90th percentile, µs. */
  p90: number;
}

/** Median and p90 of samples given in milliseconds, returned in µs. */
export function stat(samplesMs: number[]): Stat {
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] * 1000;
  return { n: s.length, median: at(0.5), p90: at(0.9) };
}

/**
 * Runs `fn` `warmup + runs` times and returns the stats of the last `runs`. `setup` and `teardown` run
 * around each timed call, untimed; setup's result is passed to fn and teardown.
 */
export function measure<T>(
  runs: number,
  fn: (x: T) => void,
  setup: () => T = () => undefined as T,
  teardown: (x: T) => void = () => {},
  warmup = Math.max(5, Math.floor(runs / 10)),
): Stat {
  const samples: number[] = [];
  for (let i = -warmup; i < runs; i++) {
    const x = setup();
    const t0 = performance.now();
    fn(x);
    const t1 = performance.now();
    teardown(x);
    if (i >= 0) samples.push(t1 - t0);
  }
  return stat(samples);
}

/** {@linkcode measure} for a function whose work ends when its promise settles (no setup or teardown). */
export async function measureAsync(
  runs: number,
  fn: () => Promise<void>,
  warmup = Math.max(5, Math.floor(runs / 10)),
): Promise<Stat> {
  const samples: number[] = [];
  for (let i = -warmup; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    const t1 = performance.now();
    if (i >= 0) samples.push(t1 - t0);
  }
  return stat(samples);
}

/** Formats µs with sensible precision. */
export function us(v: number): string {
  return v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : v < 10 ? `${v.toFixed(2)} µs` : `${v.toFixed(1)} µs`;
}
