/**
 * `deno task bench`: snapvm's timings next to the physical floor (bench/floor.c: the same KVM steps done by
 * a minimal C program), measured in the same run. Prints medians and p90 in µs or ms, and ratios of medians.
 *
 * Usage: `deno task bench [--runs N] [--quick] [--calls]` (`--quick`: fewer runs, for a smoke test;
 * `--calls`: only the sandbox and call rows, without the cold-start table).
 *
 * @module
 */
import { blake3Backend, HostFunctions, MultiUseSandbox, Snapshot, UninitializedSandbox } from "../mod.ts";
import { type FloorStat, runFloor } from "./_floor.ts";
import { measure, measureAsync, type Stat, us } from "./_stats.ts";

const arg = (name: string) => Deno.args.indexOf(name);
const QUICK = arg("--quick") >= 0;
const CALLS_ONLY = arg("--calls") >= 0;
const RUNS = arg("--runs") >= 0 ? Number(Deno.args[arg("--runs") + 1]) : QUICK ? 20 : 200;
const guest = new URL("../guest/bin/testguest", import.meta.url).pathname;
const hostFunctions = () =>
  new HostFunctions().register(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    (a: number, b: number) => a + b,
  );

interface Row {
  what: string;
  ours: Stat;
  floor?: string;
}
const rows: Row[] = [];
const log = (s: string) => console.error(`bench: ${s}`);

// --- Evolve to the first Echo, the Echo round trip, teardown.
{
  const u = new UninitializedSandbox(guest, {}, hostFunctions());
  u.evolve().close(); // opens /dev/kvm and the keeper VM once, as any long-lived process would
  log("evolve");
  rows.push({
    what: "evolve + first Echo (128 KiB heap)",
    ours: measure<{ sbx?: MultiUseSandbox }>(
      RUNS,
      (s) => {
        s.sbx = u.evolve();
        s.sbx.call("Echo", "x");
      },
      () => ({}),
      (s) => s.sbx?.close(),
    ),
    floor: "create",
  });
  using sbx = u.evolve();
  log("call");
  rows.push({
    what: "Echo call round trip",
    ours: measure(RUNS * 5, () => void sbx.call("Echo", "hello")),
    floor: "call",
  });
  // Calls that do not stop the world: callAsync and hot sandboxes.
  log("callAsync");
  rows.push({
    what: "Echo callAsync round trip (run thread)",
    ours: await measureAsync(RUNS * 5, async () => void await sbx.callAsync("Echo", "hello")),
    floor: "call",
  });
  {
    using hot = new UninitializedSandbox(guest, { hot: true }, hostFunctions()).evolve();
    log("hot call");
    rows.push({
      what: "Echo hot call round trip (mailbox, no exit)",
      ours: measure(RUNS * 50, () => void hot.call("Echo", "hello")),
      floor: "mailbox",
    });
    log("hot callAsync");
    rows.push({
      what: "Echo hot callAsync round trip",
      ours: await measureAsync(RUNS * 5, async () => void await hot.callAsync("Echo", "hello")),
      floor: "mailbox",
    });
  }
  log("close");
  rows.push({
    what: "close (teardown)",
    ours: measure<MultiUseSandbox>(RUNS, (s) => s.close(), () => u.evolve()),
    floor: "teardown",
  });
}

// --- The cold-start table.
const SIZES: [string, number][] = CALLS_ONLY
  ? []
  : [["128k", 128 << 10], ["8m", 8 << 20], ["64m", 64 << 20], ["256m", 256 << 20]];
const dir = Deno.makeTempDirSync({ prefix: "snapvm-bench-" });
const cold: Record<string, Record<string, Stat>> = {};
try {
  for (const [name, heapSize] of SIZES) {
    const big = heapSize >= 64 << 20;
    const slowRuns = QUICK ? 5 : big ? 20 : 50;
    const fastRuns = QUICK ? 10 : big ? 100 : RUNS;
    // The guest's init touches every heap page (init arg bit 0), as a real pre-initialising guest would.
    const config = { heapSize, guestInitArg: 1, maxExecutionTimeMs: 0 };
    const u = new UninitializedSandbox(guest, config, hostFunctions());
    const file = `${dir}/${name}.hls`;
    log(`cold ${name}: a (evolve)`);
    const r: Record<string, Stat> = {};
    r.a = measure<{ sbx?: MultiUseSandbox }>(
      slowRuns,
      (s) => {
        s.sbx = u.evolve();
        s.sbx.call("Echo", "x");
      },
      () => ({}),
      (s) => s.sbx?.close(),
      2,
    );
    {
      using src = u.evolve();
      const snap = src.snapshot();
      log(`cold ${name}: toFile`);
      r.toFile = measureAsyncSync(slowRuns, () => snap.toFile(file));
      snap.close();
    }
    const fns = hostFunctions();
    // Each run ends (untimed) by closing the sandbox and, unless cached, the loaded snapshot.
    const coldRun = (load: () => Snapshot, runs: number, cached = false) =>
      measure<{ sbx?: MultiUseSandbox; snap?: Snapshot }>(
        runs,
        (s) => {
          s.snap = load();
          s.sbx = MultiUseSandbox.fromSnapshot(s.snap, fns);
          s.sbx.call("Echo", "x");
        },
        () => ({}),
        (s) => {
          s.sbx?.close();
          if (!cached) s.snap?.close();
        },
        3,
      );
    log(`cold ${name}: b (fromFile)`);
    r.b = coldRun(() => Snapshot.fromFile(file), slowRuns);
    log(`cold ${name}: c (fromFileUnchecked)`);
    r.c = coldRun(() => Snapshot.fromFileUnchecked(file), fastRuns);
    log(`cold ${name}: d (fromFileCached, warm)`);
    const keep = Snapshot.fromFileCached(file);
    r.d = coldRun(() => Snapshot.fromFileCached(file), fastRuns, true);
    void keep;
    if (heapSize >= 8 << 20) {
      using sbx = MultiUseSandbox.fromSnapshot(Snapshot.fromFile(file), fns);
      const snap = sbx.snapshot();
      for (const n of [1, 1000]) {
        log(`cold ${name}: restore after ${n} dirty pages`);
        r[`restore${n}`] = measure(fastRuns, () => sbx.restore(snap), () => void sbx.call("TouchPages", n));
      }
    }
    cold[name] = r;
    Deno.removeSync(file);
  }
} finally {
  Deno.removeSync(dir, { recursive: true });
}

/** Times a function returning a promise that does its work synchronously (toFile), like `measure`. */
function measureAsyncSync(runs: number, fn: () => Promise<void>): Stat {
  return measure(runs, () => void fn().catch((e) => log(`toFile failed: ${e}`)), undefined, undefined, 1);
}

log("floor (bench/floor.c)");
const floor = await runFloor({
  runs: QUICK ? 50 : RUNS,
  only: CALLS_ONLY ? ["create", "call", "mailbox"] : [],
});
const f = (name: string): FloorStat | undefined => floor.get(name);
const cell = (s?: { median: number; p90: number }) => (s ? `${us(s.median)} / ${us(s.p90)}` : "n/a");
const ratio = (
  a?: { median: number },
  b?: { median: number },
) => (a && b ? `${(a.median / b.median).toFixed(2)}x` : "-");

console.log(
  `\n## snapvm bench (median / p90; floor = bench/floor.c in this run; BLAKE3: ${blake3Backend()})\n`,
);
console.log("| step | snapvm | floor step | floor | snapvm / floor |");
console.log("|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.what} | ${cell(r.ours)} | ${r.floor} | ${cell(f(r.floor!))} | ${ratio(r.ours, f(r.floor!))} |`,
  );
}
const createCall = f("create") && f("call")
  ? { median: f("create")!.median + f("call")!.median, p90: f("create")!.p90 + f("call")!.p90 }
  : undefined;
console.log(
  `| evolve + first Echo vs floor create + call | | create + call | ${cell(createCall)} | ${
    ratio(rows[0].ours, createCall)
  } |`,
);

const echo = rows.find((r) => r.what === "Echo call round trip")?.ours;
const hotEcho = rows.find((r) => r.what.startsWith("Echo hot call round trip"))?.ours;
console.log(
  `\nHot Echo ${cell(hotEcho)} vs exit-based Echo ${cell(echo)}: ${
    ratio(echo, hotEcho)
  } faster; C mailbox floor ${cell(f("mailbox"))}, C exit floor ${cell(f("call"))}`,
);

if (CALLS_ONLY) Deno.exit(0);
console.log("\n## Cold start: nothing → one completed Echo (median / p90)\n");
console.log(
  "| heap | (a) evolve, init touches heap | (b) fromFile | (c) fromFileUnchecked | (d) fromFileCached warm | floor cold | (c)/floor | (a)/(c) | toFile | restore 1 page | restore 1000 pages | floor restore 1 / 1000 |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const [name] of SIZES) {
  const r = cold[name];
  const fc = f(`cold_${name}`);
  console.log(
    `| ${name} | ${cell(r.a)} | ${cell(r.b)} | ${cell(r.c)} | ${cell(r.d)} | ${cell(fc)} | ${
      ratio(r.c, fc)
    } | ${ratio(r.a, r.c)} | ${cell(r.toFile)} | ${cell(r.restore1)} | ${cell(r.restore1000)} | ${
      f(`restore_${name}_n1`)
        ? `${us(f(`restore_${name}_n1`)!.median)} / ${us(f(`restore_${name}_n1000`)!.median)}`
        : "-"
    } |`,
  );
}
const c128 = cold["128k"]?.c, c256 = cold["256m"]?.c;
if (c128 && c256) console.log(`\n(c) at 256 MiB vs 128 KiB: ${ratio(c256, c128)}`);
const b256 = cold["256m"]?.b;
if (b256 && c256) {
  const hashMs = (b256.median - c256.median) / 1000;
  console.log(
    `(b) − (c) at 256 MiB: ${hashMs.toFixed(1)} ms = ${
      (256 / 1024 / (hashMs / 1000)).toFixed(2)
    } GB/s over the blob`,
  );
}
