/**
 * Table 1 of `deno task bench`: a sandbox from nothing, calls (exit-based, on the run thread, hot) and
 * teardown, next to bench/floor.c doing the same KVM steps in C.
 *
 * @module
 */
import { UninitializedSandbox } from "../mod.ts";
import type { MultiUseSandbox } from "../mod.ts";
import { runFloor } from "./_floor.ts";
import { GUEST, hostFunctions } from "./_guest.ts";
import { type BenchOptions, log } from "./_options.ts";
import { sum, type Table } from "./_report.ts";
import { measure, measureAsync } from "./_stats.ts";

/** Measures table 1. */
export async function callsTable(o: BenchOptions): Promise<Table> {
  const runs = o.count(200);
  const u = new UninitializedSandbox(GUEST, {}, hostFunctions());
  u.evolve().close(); // opens /dev/kvm and the keeper VM once, as any long-lived process would
  log("calls: evolve");
  const evolve = measure<{ sbx?: MultiUseSandbox }>(
    runs,
    (s) => {
      s.sbx = u.evolve();
      s.sbx.call("Echo", "x");
    },
    () => ({}),
    (s) => s.sbx?.close(),
  );
  using sbx = u.evolve();
  log("calls: call");
  const call = measure(runs * 5, () => void sbx.call("Echo", "hello"));
  log("calls: callAsync");
  const callAsync = await measureAsync(runs * 5, async () => void await sbx.callAsync("Echo", "hello"));
  let hot, hotAsync;
  {
    using h = new UninitializedSandbox(GUEST, { hot: true }, hostFunctions()).evolve();
    log("calls: hot call");
    hot = measure(runs * 50, () => void h.call("Echo", "hello"));
    log("calls: hot callAsync");
    hotAsync = await measureAsync(runs * 5, async () => void await h.callAsync("Echo", "hello"));
  }
  log("calls: close");
  const close = measure<MultiUseSandbox>(runs, (s) => s.close(), () => u.evolve());

  log("calls: floor (bench/floor.c create, call, mailbox)");
  const floor = await runFloor({ runs: Math.max(10, runs), only: ["create", "call", "mailbox"] });
  const f = (name: string) => floor.get(name);
  return {
    title: "1. Calls (128 KiB heap; baseline: bench/floor.c, the same KVM steps in C)",
    rows: [
      {
        what: "evolve + first Echo",
        ours: evolve,
        baseline: "floor create + call (VM from nothing to first out, one more out)",
        base: sum(f("create"), f("call")),
      },
      { what: "Echo call", ours: call, baseline: "floor call (KVM_RUN: exit + re-entry)", base: f("call") },
      { what: "Echo callAsync (run thread)", ours: callAsync, baseline: "floor call", base: f("call") },
      {
        what: "hot Echo call (mailbox, no exit)",
        ours: hot,
        baseline: "floor mailbox (CPL3 guest polling guest memory)",
        base: f("mailbox"),
      },
      { what: "hot Echo callAsync", ours: hotAsync, baseline: "floor mailbox", base: f("mailbox") },
      { what: "hot Echo call vs exit-based", ours: hot, baseline: "Echo call (snapvm)", base: call },
      {
        what: "close (teardown)",
        ours: close,
        baseline: "floor teardown (munmap, close vCPU and VM)",
        base: f("teardown"),
      },
    ],
    notes: ["The baseline of evolve is the sum of the floor's create and call medians (no p90)."],
  };
}
