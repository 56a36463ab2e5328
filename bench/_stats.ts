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

/**
 * Runs each case `warmup + runs` times, interleaved (a, b, a, b, …) so that a noisy neighbour slows every
 * case alike, and returns the stats of the last `runs` of each. A case returns its own time in ms (it times
 * only its measured part).
 */
export async function interleaved(
  runs: number,
  warmup: number,
  cases: readonly (() => number | Promise<number>)[],
): Promise<Stat[]> {
  const samples: number[][] = cases.map(() => []);
  for (let i = -warmup; i < runs; i++) {
    for (const [k, c] of cases.entries()) {
      const ms = await c();
      if (i >= 0) samples[k].push(ms);
    }
  }
  return samples.map(stat);
}

/** Milliseconds `fn` takes, until its promise (if any) settles. */
export async function timeMs(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Milliseconds `fn` takes (synchronous). */
export function timeSync(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}
