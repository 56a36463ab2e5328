/**
 * `deno task bench`: snapvm's timings next to the physical floor (bench/floor.c: the same KVM steps done by
 * a minimal C program), measured in the same run. Prints medians and p90 and the ratio of medians.
 *
 * Usage: `deno task bench [--runs N]`.
 *
 * @module
 */
import { type MultiUseSandbox, UninitializedSandbox } from "../mod.ts";
import { runFloor } from "./_floor.ts";
import { measure, type Stat, us } from "./_stats.ts";

const runsArg = Deno.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(Deno.args[runsArg + 1]) : 200;
const guest = new URL("../guest/bin/testguest", import.meta.url).pathname;

interface Row {
  what: string;
  ours: Stat;
  floorName?: string;
}

const rows: Row[] = [];

// Issue 2: evolve to the first Echo, and the Echo round trip.
{
  const u = new UninitializedSandbox(guest);
  u.evolve().close(); // opens /dev/kvm and the keeper VM once, as any long-lived process would
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
    floorName: "create",
  });
  using sbx = u.evolve();
  rows.push({
    what: "Echo call round trip",
    ours: measure(RUNS * 5, () => void sbx.call("Echo", "hello")),
    floorName: "call",
  });
  const tdU = u;
  rows.push({
    what: "close (teardown)",
    ours: measure(RUNS, (s: ReturnType<typeof u.evolve>) => s.close(), () => tdU.evolve()),
    floorName: "teardown",
  });
}

const floor = await runFloor({ runs: RUNS, only: ["create", "call"] });

console.log(`\nsnapvm bench (${RUNS} runs; µs unless marked; floor = bench/floor.c in this run)\n`);
console.log("| step | snapvm median | snapvm p90 | floor step | floor median | floor p90 | ratio (median) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) {
  const f = r.floorName ? floor.get(r.floorName) : undefined;
  console.log(
    `| ${r.what} | ${us(r.ours.median)} | ${us(r.ours.p90)} | ${r.floorName ?? "-"} | ${
      f ? us(f.median) : "n/a"
    } | ${f ? us(f.p90) : "n/a"} | ${f ? (r.ours.median / f.median).toFixed(2) + "x" : "-"} |`,
  );
}
