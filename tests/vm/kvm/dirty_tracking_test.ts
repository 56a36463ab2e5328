/**
 * Dirty tracking under restore, at the edges of the mechanism: more pages than a dirty ring holds in one
 * call (KVM exits to have it emptied), more than the sticky limit (pages are write-protected again), and
 * alternating small and large rounds. Memory must equal the snapshot after every restore.
 */
import assert from "node:assert/strict";
import { UninitializedSandbox } from "../../../mod.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";

vmTest(
  "restore is exact after calls that dirty more pages than a dirty ring holds, or the sticky limit",
  () => {
    const PAGES = 10_000;
    using sbx = new UninitializedSandbox(guestPath("attackguest"), {
      heapSize: 48 << 20,
      maxExecutionTimeMs: 0,
    })
      .evolve();
    const heap = sbx.call("Alloc", BigInt(PAGES) * 4096n) as bigint;
    sbx.call("FillPages", heap, PAGES, 1n);
    using snap = sbx.snapshot();
    for (const pages of [6000, 1, 70, 6000, 2, 0, PAGES, 1, 65, 64, 3]) {
      sbx.call("FillPages", heap, pages, 7n);
      assert.equal(sbx.call("SumPages", heap, PAGES), BigInt(PAGES + pages * 6));
      sbx.restore(snap);
      assert.equal(sbx.call("SumPages", heap, PAGES), BigInt(PAGES), `after dirtying ${pages} pages`);
    }
  },
);
