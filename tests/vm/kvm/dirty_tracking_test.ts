/**
 * Dirty tracking under restore, at the edges of the mechanism: more pages than a dirty ring holds in one
 * call (KVM exits to have it emptied), more than the sticky limit (pages are write-protected again), and
 * alternating small and large rounds. Memory must equal the snapshot after every restore.
 */
import assert from "node:assert/strict";
import { UninitializedSandbox } from "../../../mod.ts";
import { useNativeRestore } from "../../../vm/memory/restore_library.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";

for (const native of [true, false]) {
  vmTest(
    `restore is exact after calls that dirty more pages than a dirty ring holds, or stay sticky for many ` +
      `rounds (${native ? "native" : "JavaScript"} page restore)`,
    () => {
      const before = useNativeRestore(native);
      try {
        dirtyAndRestore();
      } finally {
        useNativeRestore(before);
      }
    },
  );
}

function dirtyAndRestore(): void {
  const PAGES = 10_000;
  using sbx = new UninitializedSandbox(guestPath("attackguest"), {
    heapSize: 48 << 20,
    maxExecutionTimeMs: 0,
  })
    .evolve();
  const heap = sbx.call("Alloc", BigInt(PAGES) * 4096n) as bigint;
  sbx.call("FillPages", heap, PAGES, 1n);
  using snap = sbx.snapshot();
  // Sizes around the ring (4096 entries) and the sticky set limits, and runs of equal rounds that outlive
  // a sticky set (vm/machine/guest_vm.ts: 8 rounds for sets over 64 pages, 32 for smaller ones).
  const rounds = [
    6000,
    1,
    70,
    6000,
    2,
    0,
    PAGES,
    1,
    65,
    64,
    3,
    ...Array(10).fill(1000),
    ...Array(34).fill(5),
  ];
  for (const pages of rounds) {
    sbx.call("FillPages", heap, pages, 7n);
    assert.equal(sbx.call("SumPages", heap, PAGES), BigInt(PAGES + pages * 6));
    sbx.restore(snap);
    assert.equal(sbx.call("SumPages", heap, PAGES), BigInt(PAGES), `after dirtying ${pages} pages`);
  }
}
