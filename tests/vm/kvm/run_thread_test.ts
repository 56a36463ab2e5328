/**
 * The vCPU run thread (vm/kvm/run_thread.ts, vm/kvm/_run_thread.c): its committed machine code matches a
 * fresh build, and its threads come and go with the VMs that use them.
 */
import assert from "node:assert/strict";
import { UninitializedSandbox } from "../../../mod.ts";
import { buildRunThread, renderRunThreadModule } from "../../../vm/kvm/build_run_thread.ts";
import { RUN_THREAD_NAME } from "../../../vm/kvm/run_thread.ts";
import { RUN_THREAD_IMAGE } from "../../../vm/kvm/_run_thread_image.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";
import { gccOrSkip, sameToolchain } from "../../_rebuild.ts";

Deno.test("the committed run-thread image is position independent code with its entry points inside", () => {
  const image = Uint8Array.from(atob(RUN_THREAD_IMAGE.base64), (c) => c.charCodeAt(0));
  assert.ok(image.length > 0 && image.length <= 4 * 4096);
  for (const offset of Object.values(RUN_THREAD_IMAGE.entries)) assert.ok(offset < image.length);
});

Deno.test("rebuilding the run thread from _run_thread.c gives the committed module byte for byte", async () => {
  if (!(await gccOrSkip("the run-thread rebuild comparison"))) return;
  const rebuilt = await buildRunThread();
  if (!sameToolchain(rebuilt.toolchain, RUN_THREAD_IMAGE.toolchain, "the image")) return;
  assert.equal(
    renderRunThreadModule(rebuilt),
    await Deno.readTextFile(new URL("../../../vm/kvm/_run_thread_image.ts", import.meta.url)),
    "vm/kvm/_run_thread_image.ts differs from a rebuild: run deno run -A vm/kvm/build_run_thread.ts",
  );
});

/** Kernel ids of this process's run threads. */
function runThreads(): Set<number> {
  const tids = new Set<number>();
  for (const e of Deno.readDirSync("/proc/self/task")) {
    try {
      if (Deno.readTextFileSync(`/proc/self/task/${e.name}/comm`).trim() === RUN_THREAD_NAME) {
        tids.add(Number(e.name));
      }
    } catch {
      // ended meanwhile
    }
  }
  return tids;
}

vmTest(
  "a run thread starts with the first async call, stays with its (pooled) VM, and is reused",
  async () => {
    const u = new UninitializedSandbox(guestPath("testguest"));
    let tid: number;
    {
      using sbx = u.evolve();
      const before = runThreads();
      assert.equal(sbx.call("Echo", "sync"), "sync");
      assert.deepEqual(runThreads(), before, "a synchronous call starts no thread");
      assert.equal(await sbx.callAsync("Echo", "async"), "async");
      const added = [...runThreads()].filter((t) => !before.has(t));
      assert.equal(added.length, 1, "one thread for the sandbox");
      tid = added[0];
      assert.notEqual(tid, Deno.pid);
      assert.equal(new Int32Array(sbx.interruptHandle().shared)[3], tid, "the call's interrupt target");
    }
    // The VM went back to the pool with its thread: the next sandbox gets both.
    assert.ok(runThreads().has(tid));
    using next = u.evolve();
    assert.equal(await next.callAsync("Echo", "again"), "again");
    assert.equal(new Int32Array(next.interruptHandle().shared)[3], tid);
  },
);
