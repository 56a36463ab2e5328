/**
 * Runs snapshot lifecycles in a fresh Deno process (so that no other test's objects, waiting for garbage
 * collection, open or close descriptors meanwhile) and prints the process's resource counts before and
 * after as JSON. Used by tests/snapshot_leak_test.ts:
 *
 *   deno run -A --v8-flags=--expose-gc tests/_snapshot_leak_child.ts <scenario> <cycles> <dir>
 *
 * @module
 */
import { dropIdleSystemAreas } from "../../../vm/machine/system_image.ts";
import { MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { counts, hostFns, mappingsOf, testguest } from "./_util.ts";

const [scenario, cyclesArg, dir] = Deno.args;
const cycles = Number(cyclesArg);
const path = `${dir}/s.hls`;

/** fromFile → fromSnapshot → restores (copy-back, remap, after a crash) → sibling → close. */
function fileCycle(i: number): void {
  using loaded = Snapshot.fromFile(path);
  using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
  sbx.call("TouchPages", 8 + (i % 16));
  sbx.restore(loaded); // copy-back
  using own = sbx.snapshot();
  sbx.call("AddToStatic", i);
  sbx.restore(loaded); // remap
  sbx.restore(own); // remap
  try {
    sbx.call("IllegalInstruction");
  } catch { /* poisoned */ }
  sbx.restore(loaded); // after a crash
  using sibling = MultiUseSandbox.fromSnapshot(own, hostFns());
  if (sibling.call("GetStatic") !== 41 || sbx.call("GetStatic") !== 41) throw new Error("wrong state");
}

// 2 MiB of scratch and 3 MiB of persistent memory per sandbox: a leaked region would show in VmSize.
const u = testguest({ heapSize: 1 << 20, stackSize: 2 << 20 });

/** In-memory, Initialise, unchecked and cached snapshots; a snapshot closed while its sandbox lives. */
async function mixedCycle(i: number): Promise<void> {
  using pre = u.snapshot();
  using fromPre = MultiUseSandbox.fromSnapshot(pre, hostFns());
  fromPre.call("AddToStatic", i);
  fromPre.restore(pre); // Initialise: init runs again
  using call = fromPre.snapshot();
  using child = MultiUseSandbox.fromSnapshot(call, hostFns());
  child.restore(call);
  if (i % 20 === 0) await call.toFile(`${dir}/out.hls`);
  using unchecked = Snapshot.fromFileUnchecked(path);
  using fromUnchecked = MultiUseSandbox.fromSnapshot(unchecked, hostFns());
  fromUnchecked.restore(unchecked);
  const cached = Snapshot.fromFileCached(path);
  using fromCached = MultiUseSandbox.fromSnapshot(cached, hostFns());
  fromCached.call("Echo", "x");
  Snapshot.inspectFile(path);
  using early = MultiUseSandbox.fromSnapshot(call, hostFns());
  call.close(); // the sandbox keeps its memory until it is closed
  early.call("TouchPages", 4);
}

/**
 * How many mappings of snapshot memory (in-memory snapshots are memfds; files in `dir`) and of KVM vCPUs
 * exist, by kind. Counts, not addresses: a pooled vCPU re-created elsewhere is not a leak.
 */
const snapshotMappings = () => ({
  memfd: mappingsOf("memfd:snapvm").length,
  files: mappingsOf(dir).length,
  kvm: mappingsOf("kvm").length,
});

/** Counts after a full garbage collection (the test runs this with --expose-gc), so the heap is settled. */
function settled() {
  (globalThis as { gc?: () => void }).gc?.();
  dropIdleSystemAreas(); // a bounded cache, not a leak
  const vmSizeKiB = Number(/VmSize:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))![1]);
  return { ...counts(), vmSizeKiB, snapshotMappings: snapshotMappings() };
}

{
  using sbx = u.evolve();
  sbx.call("AddToStatic", 41);
  using snap = sbx.snapshot();
  await snap.toFile(path);
}
const run = async (i: number) => scenario === "file" ? fileCycle(i) : await mixedCycle(i);
for (let i = 0; i < 5; i++) await run(i); // warm up: /dev/kvm, idle VMs kept for reuse, JIT
Snapshot.fromFileCached(path).close();
const before = settled();
for (let i = 0; i < cycles; i++) await run(i);
Snapshot.fromFileCached(path).close(); // the cached one is kept (weakly) until closed or collected
const after = settled();
console.log(JSON.stringify({ before, after }));
