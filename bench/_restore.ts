/**
 * The restore rows of table 2: `sbx.restore(snap)` after a call that dirtied 1 or 1,000 pages, at 8, 64 and
 * 256 MiB heaps, next to bench/floor.c's dirty-log restore (`KVM_GET_DIRTY_LOG` + copying the dirty pages
 * back) at the same sizes.
 *
 * Both sides are measured in {@linkcode ROUNDS} interleaved rounds (the floor's process, then snapvm, then
 * the floor again, ...) and each figure is the median of its rounds' medians (p90 likewise): on these
 * shared machines a restore of a few µs runs up to twice as slow for seconds at a time, and one side
 * measured only before or after the other would compare two different machines.
 *
 * @module
 */
import { MultiUseSandbox, Snapshot } from "../mod.ts";
import { runFloor } from "./_floor.ts";
import { guestSandbox, hostFunctions } from "./_guest.ts";
import { type BenchOptions, log } from "./_options.ts";
import type { Figure, Row } from "./_report.ts";
import { measure, type Stat } from "./_stats.ts";

/** The heap sizes, named as bench/floor.c names them. */
const SIZES: readonly (readonly [string, number])[] = [["8m", 8 << 20], ["64m", 64 << 20], [
  "256m",
  256 << 20,
]];

/** Dirty pages per call, and the target of `snapvm / floor` for each (issue: ≤ 2x after 1, ≤ 1.2x after 1,000). */
const PAGES = [[1, 2], [1000, 1.2]] as const;

/** Interleaved rounds of floor and snapvm. */
const ROUNDS = 5;

/** The median of a few values. */
function mid(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** One figure from per-round stats: the median of their medians and of their p90s. */
function acrossRounds(stats: { median: number; p90: number }[]): Figure {
  return { median: mid(stats.map((s) => s.median)), p90: mid(stats.map((s) => s.p90)) };
}

/** Measures the restore rows. `dir` is a scratch directory for the snapshot files. */
export async function restoreRows(o: BenchOptions, dir: string): Promise<Row[]> {
  const sandboxes: { name: string; sbx: MultiUseSandbox; snap: Snapshot; loaded: Snapshot }[] = [];
  try {
    for (const [name, heapSize] of SIZES) {
      // As a server runs: a sandbox from a snapshot file, snapshotted after a warm-up call has allocated its
      // buffer, so that each measured call writes exactly the pages it touches (as the floor's guest does).
      const file = `${dir}/restore-${name}.hls`;
      {
        using sbx = guestSandbox(heapSize).evolve();
        using snap = sbx.snapshot();
        await snap.toFile(file);
      }
      const loaded = Snapshot.fromFileUnchecked(file);
      const sbx = MultiUseSandbox.fromSnapshot(loaded, hostFunctions());
      sbx.call("TouchPages", 1000);
      sandboxes.push({ name, sbx, snap: sbx.snapshot(), loaded });
      await Deno.remove(file);
    }
    const ours = new Map<string, Stat[]>(), floor = new Map<string, Stat[]>();
    const runs = Math.max(3, Math.round(o.count(1000) / ROUNDS));
    for (let round = 0; round < ROUNDS; round++) {
      log(`cold: restore round ${round + 1}/${ROUNDS}: floor`);
      for (
        const [metric, s] of await runFloor({
          runs: Math.max(3, Math.round(o.count(200) / ROUNDS)),
          only: ["restore"],
        })
      ) {
        floor.set(metric, [...floor.get(metric) ?? [], s]);
      }
      for (const { name, sbx, snap } of sandboxes) {
        for (const [n] of PAGES) {
          log(`cold: restore round ${round + 1}/${ROUNDS}: ${name} after ${n} dirty pages`);
          // A server restores after every request: the code as warm as it is there (a cheap restore needs
          // about a thousand rounds before the JIT has settled; the C floor needs none).
          const warm = round === 0 ? (n === 1 ? 1000 : 50) : 20;
          const s = measure(
            n === 1 ? runs : Math.max(3, Math.round(runs / 5)),
            () => sbx.restore(snap),
            () => void sbx.call("TouchPages", n),
            undefined,
            warm,
          );
          ours.set(`${name}_n${n}`, [...ours.get(`${name}_n${n}`) ?? [], s]);
        }
      }
    }
    const rows: Row[] = [];
    for (const [name] of SIZES) {
      for (const [n, target] of PAGES) {
        const base = floor.get(`restore_${name}_n${n}`);
        rows.push({
          what: `${name} restore after ${n} dirty page${n > 1 ? "s" : ""} (${ROUNDS} rounds)`,
          ours: acrossRounds(ours.get(`${name}_n${n}`)!),
          baseline: `floor restore ${name}, ${n} page${n > 1 ? "s" : ""} (dirty log + copy)`,
          base: base === undefined ? undefined : acrossRounds(base),
          target,
        });
      }
    }
    return rows;
  } finally {
    for (const s of sandboxes) {
      s.sbx.close();
      s.snap.close();
      s.loaded.close();
    }
  }
}
