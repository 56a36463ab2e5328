/**
 * The restore rows of table 2: `sbx.restore(snap)` after a call that dirtied 1 or 1,000 pages, at 8, 64 and
 * 256 MiB heaps, next to bench/floor.c's dirty-log restore (`KVM_GET_DIRTY_LOG` + copying the dirty pages
 * back) at the same sizes.
 *
 * Both sides are measured in {@linkcode ROUNDS} rounds, each in a fresh process of its own (the floor's C
 * program, and `_restore_child.ts`), in turns first: on these shared machines everything runs up to twice as
 * slow for seconds at a time, and a restore of a few µs also depends on where its process's memory landed.
 * One long-lived process measured before or after the other would compare two different machines. Each
 * figure is the median of its rounds' medians (p90 likewise).
 *
 * @module
 */
import { MultiUseSandbox, Snapshot } from "../mod.ts";
import { runFloor } from "./_floor.ts";
import { guestSandbox, hostFunctions } from "./_guest.ts";
import { log } from "./_options.ts";
import type { Figure, Row } from "./_report.ts";
import { measure, type Stat } from "./_stats.ts";

/** The heap sizes in MiB, by the names bench/floor.c gives them. */
const SIZES: readonly (readonly [string, number])[] = [["8m", 8], ["64m", 64], ["256m", 256]];

/** Dirty pages per call, and the target of `snapvm / floor` for each (issue: ≤ 2x after 1, ≤ 1.2x after 1,000). */
const PAGES = [[1, 2], [1000, 1.2]] as const;

/** Time spent calling and restoring before measuring: at the first size of a process, and at later ones. */
const WARM_FIRST_MS = 2000, WARM_LATER_MS = 1000;

/** Runs `setup` then `fn` for `ms` milliseconds. */
function warmUp(ms: number, fn: () => void, setup: () => void): void {
  for (const end = performance.now() + ms; performance.now() < end;) {
    setup();
    fn();
  }
}

/** Rounds: fresh processes of floor and snapvm each. */
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

/**
 * Measures every restore row once in this process (`runs` restores after 1 dirty page, a fifth as many after
 * 1,000), by `<size>_n<pages>`. `dir` is a scratch directory for the snapshot files.
 */
export async function measureRestores(runs: number, dir: string): Promise<Record<string, Stat>> {
  const out: Record<string, Stat> = {};
  for (const [name, mib] of SIZES) {
    // As a server runs: a sandbox from a snapshot file, snapshotted after a warm-up call has allocated its
    // buffer, so that each measured call writes exactly the pages it touches (as the floor's guest does).
    const file = `${dir}/restore-${name}.hls`;
    {
      using sbx = guestSandbox(mib << 20).evolve();
      using snap = sbx.snapshot();
      await snap.toFile(file);
    }
    using loaded = Snapshot.fromFileUnchecked(file);
    using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFunctions());
    sbx.call("TouchPages", 1000);
    using snap = sbx.snapshot();
    await Deno.remove(file);
    for (const [n] of PAGES) {
      const restore = () => sbx.restore(snap), call = () => void sbx.call("TouchPages", n);
      // A server restores after every request: measure it as warm as it is there. A process takes 1-2 s of
      // calls and restores to settle (a restore after 1 page: 2-4 µs at first, ~1 µs after; measured, not
      // explained); later sizes run the same code. The C floor needs no warm-up.
      if (n === 1) warmUp(name === SIZES[0][0] ? WARM_FIRST_MS : WARM_LATER_MS, restore, call);
      out[`${name}_n${n}`] = measure(
        n === 1 ? runs : Math.max(3, Math.round(runs / 5)),
        restore,
        call,
        undefined,
        n === 1 ? 100 : 50,
      );
    }
  }
  return out;
}

/** One round of snapvm's side: `_restore_child.ts` in a Deno process of its own. */
async function childRound(runs: number): Promise<Record<string, Stat>> {
  const child = new URL("./_restore_child.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", child.href, String(runs)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `bench: restore round failed (exit ${out.code}):\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Measures the restore rows (`runs`: restores after 1 dirty page over all rounds; the floor's `floorRuns`). */
export async function restoreRows(runs: number, floorRuns: number): Promise<Row[]> {
  const ours = new Map<string, Stat[]>(), floor = new Map<string, Stat[]>();
  const perRound = (n: number) => Math.max(3, Math.round(n / ROUNDS));
  for (let round = 0; round < ROUNDS; round++) {
    log(`cold: restore round ${round + 1}/${ROUNDS}`);
    const floorSide = async () => {
      for (const [metric, s] of await runFloor({ runs: perRound(floorRuns), only: ["restore"] })) {
        const key = metric.replace(/^restore_/, "");
        floor.set(key, [...floor.get(key) ?? [], s]);
      }
    };
    const ourSide = async () => {
      for (const [key, s] of Object.entries(await childRound(perRound(runs)))) {
        ours.set(key, [...ours.get(key) ?? [], s]);
      }
    };
    // In turns first, so that neither side always runs right after the other.
    for (const side of round % 2 === 0 ? [floorSide, ourSide] : [ourSide, floorSide]) await side();
  }
  const rows: Row[] = [];
  for (const [name] of SIZES) {
    for (const [n, target] of PAGES) {
      const key = `${name}_n${n}`, base = floor.get(key);
      rows.push({
        what: `${name} restore after ${n} dirty page${n > 1 ? "s" : ""} (${ROUNDS} rounds)`,
        ours: acrossRounds(ours.get(key)!),
        baseline: `floor restore ${name}, ${n} page${n > 1 ? "s" : ""} (dirty log + copy)`,
        base: base === undefined ? undefined : acrossRounds(base),
        target,
      });
    }
  }
  return rows;
}
