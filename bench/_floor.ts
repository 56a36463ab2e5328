/**
 * The physical floor for snapvm's benchmarks: the same KVM steps snapvm performs, done by a minimal C
 * program (`bench/floor.c`) in the same run, so every benchmark can print its time next to what the kernel
 * and the hardware allow.
 *
 * {@linkcode runFloor} compiles `bench/floor.c` with `gcc -O2` into `build/floor` under the repository root
 * (gitignored; rebuilt when the source is newer than the binary), runs it, and parses its result lines.
 * Needs `--allow-run`, `--allow-read`, `--allow-write` and access to `/dev/kvm`.
 *
 * Metrics (all in µs, medians of `runs` runs after a warm-up, one idle keeper VM + vCPU alive):
 * - `create`: fresh VM from nothing to the guest's first `out` (anonymous 4 MiB guest memory, image written,
 *   memslot, vCPU, `kvm_run` mapping, `KVM_SET_SREGS`, `KVM_SET_REGS`, `KVM_RUN`); `teardown`: munmap +
 *   close of vCPU and VM.
 * - `call`: one `KVM_RUN` resuming a guest stopped at `out` until its next `out` (5 × `runs` samples).
 * - `mailbox`: a hot call's floor, without any VM exit: a CPL3 guest polling a word of guest memory inside
 *   one `KVM_RUN` on a thread of its own, and this thread writing a sequence number there and spinning until
 *   the guest has copied it into the next cache line (5 × `runs` samples).
 * - `cold_128k`, `cold_8m`, `cold_64m`, `cold_256m`: open an image file (in the page cache) to the first
 *   `out`, guest memory `mmap(MAP_PRIVATE)` of the file with `MADV_RANDOM`.
 * - `restore_<size>_n<N>` (sizes 8m, 64m, 256m; N 1 and 1000): `KVM_GET_DIRTY_LOG` + copying back the N
 *   pages the guest dirtied, from a pristine copy.
 * - {@linkcode runFloorEvicted}: `evicted_<size>_p<N>`, the image file dropped from the page cache before each
 *   run, then open to the first `out` with the guest reading N pages; `cached_<size>_p<N>`, the same warm.
 *
 * Run it by hand with `deno run -A bench/_floor.ts [runs] [group-or-metric ...]`.
 *
 * @module
 */

/** One floor metric; times in microseconds. */
export interface FloorStat {
  /** Number of measured runs. */
  n: number;
  /** Median. */
  median: number;
  /** 90th percentile (nearest rank). */
  p90: number;
  /** Fastest run. */
  min: number;
}

/** Options for {@linkcode runFloor}. */
export interface FloorOptions {
  /** Measured runs per metric (after warm-up); default 200. `call` takes 5 × this many samples. */
  runs?: number;
  /**
   * Metrics to measure: group names (`create`, `call`, `mailbox`, `cold`, `restore`) or metric names (`teardown`,
   * `cold_8m`, `restore_64m_n1000`, ...). A metric name runs its whole group but returns only that metric.
   * Default: everything.
   */
  only?: string[];
}

const GROUPS = ["create", "call", "mailbox", "cold", "restore"] as const;
const ROOT = new URL("../", import.meta.url);
const SOURCE = new URL("bench/floor.c", ROOT);
const BINARY = new URL("build/floor", ROOT);
const path = (url: URL) => decodeURIComponent(url.pathname);

/** The floor.c group that measures `metric` (a group name maps to itself). */
function groupOf(metric: string): string {
  if ((GROUPS as readonly string[]).includes(metric)) return metric;
  if (metric === "create" || metric === "teardown") return "create";
  if (metric === "call") return "call";
  if (metric === "mailbox") return "mailbox";
  if (metric.startsWith("cold_")) return "cold";
  if (metric.startsWith("restore_")) return "restore";
  throw new Error(`floor: unknown metric or group "${metric}"`);
}

async function mtime(url: URL): Promise<number | undefined> {
  try {
    return (await Deno.stat(url)).mtime?.getTime();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Compiles floor.c if needed; returns false when gcc is not installed. */
async function build(): Promise<boolean> {
  const built = await mtime(BINARY);
  if (built !== undefined && built >= (await mtime(SOURCE) ?? Infinity)) return true;
  await Deno.mkdir(new URL("build/", ROOT), { recursive: true });
  const tmp = `${path(BINARY)}.${Deno.pid}.tmp`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", { args: ["-O2", "-Wall", "-pthread", "-o", tmp, path(SOURCE)] })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (!out.success) throw new Error(`floor: gcc failed:\n${new TextDecoder().decode(out.stderr)}`);
  await Deno.rename(tmp, BINARY); // atomic, so concurrent runs never execute a half-written binary
  return true;
}

/**
 * Parses floor's output: lines `R <metric> n=<runs> med=<µs> p90=<µs> min=<µs>`; other lines are ignored.
 */
export function parseFloorOutput(text: string): Map<string, FloorStat> {
  const stats = new Map<string, FloorStat>();
  const re = /^R (\S+) n=(\d+) med=([\d.]+) p90=([\d.]+) min=([\d.]+)\s*$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (m) stats.set(m[1], { n: Number(m[2]), median: Number(m[3]), p90: Number(m[4]), min: Number(m[5]) });
  }
  return stats;
}

/**
 * Measures the physical floor: builds and runs `bench/floor.c` and returns its metrics by name (µs).
 * Returns an empty map, after printing one line saying so, when gcc is not installed.
 * Throws when the build or the measurement fails (for example without access to `/dev/kvm`).
 */
export async function runFloor(opts: FloorOptions = {}): Promise<Map<string, FloorStat>> {
  const runs = opts.runs ?? 200;
  if (!Number.isInteger(runs) || runs < 1) throw new RangeError(`floor: bad runs ${runs}`);
  const only = opts.only?.length ? opts.only : undefined;
  const groups = only ? GROUPS.filter((g) => only.some((o) => groupOf(o) === g)) : ["all"];
  if (!(await build())) {
    console.error("floor: gcc not found, the physical floor is unavailable");
    return new Map();
  }
  const tmpdir = await Deno.makeTempDir({ prefix: "snapvm-floor-" });
  const stats = new Map<string, FloorStat>();
  try {
    for (const group of groups) {
      const out = await new Deno.Command(BINARY, { args: [group, String(runs), tmpdir] }).output();
      if (!out.success) {
        throw new Error(`floor ${group} failed (exit ${out.code}):\n${new TextDecoder().decode(out.stderr)}`);
      }
      for (const [name, stat] of parseFloorOutput(new TextDecoder().decode(out.stdout))) {
        if (!only || only.includes(name) || only.includes(groupOf(name))) stats.set(name, stat);
      }
    }
  } finally {
    await Deno.remove(tmpdir, { recursive: true });
  }
  return stats;
}

/**
 * Measures floor.c's `evicted` mode: a `sizeMib` MiB image file evicted from the page cache before each run,
 * then open to the first `out` with the guest reading `pages` data pages (`evicted_<size>m_p<pages>`), and
 * the same with the file in the page cache (`cached_<size>m_p<pages>`). Empty without gcc, as
 * {@linkcode runFloor}.
 */
export async function runFloorEvicted(
  runs: number,
  sizeMib: number,
  pages: number,
): Promise<Map<string, FloorStat>> {
  if (!(await build())) {
    console.error("floor: gcc not found, the physical floor is unavailable");
    return new Map();
  }
  const tmpdir = await Deno.makeTempDir({ prefix: "snapvm-floor-" });
  try {
    const out = await new Deno.Command(BINARY, {
      args: ["evicted", String(runs), tmpdir, String(sizeMib), String(pages)],
    }).output();
    if (!out.success) {
      throw new Error(`floor evicted failed (exit ${out.code}):\n${new TextDecoder().decode(out.stderr)}`);
    }
    return parseFloorOutput(new TextDecoder().decode(out.stdout));
  } finally {
    await Deno.remove(tmpdir, { recursive: true });
  }
}

if (import.meta.main) {
  const [runs, ...only] = Deno.args;
  const stats = await runFloor({ runs: runs ? Number(runs) : undefined, only });
  for (const [name, s] of stats) {
    console.log(
      `${name.padEnd(20)} n=${String(s.n).padStart(5)}  med ${s.median.toFixed(2).padStart(9)} µs  ` +
        `p90 ${s.p90.toFixed(2).padStart(9)} µs  min ${s.min.toFixed(2).padStart(9)} µs`,
    );
  }
}
