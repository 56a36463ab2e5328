/**
 * Workers: one that ends leaves no descriptor or vCPU mapping of snapvm's behind, and a call without a time
 * limit in a Worker can be stopped from another thread, after which the Worker can be terminated.
 *
 * (Deno 2.9 cannot terminate a Worker while it runs synchronous code, any code: denoland/deno#35657. A
 * guest call is synchronous, so a call without a limit must be stopped with an interrupt handle first. An
 * asynchronous call leaves the event loop free, so such a Worker can be terminated: its run thread then
 * notices that its owner has gone, releases the vCPU and ends.)
 */
import assert from "node:assert/strict";
import { InterruptHandle, UninitializedSandbox } from "../../mod.ts";
import { dropIdleSystemAreas } from "../../vm/machine/system_image.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

const WORKER = new URL("./_sandbox_worker.ts", import.meta.url);

/** snapvm's own descriptors (KVM, /dev/kvm, snapshot memfds) and vCPU mappings of this process. */
function ours(): { fds: number; vcpuMappings: number } {
  dropIdleSystemAreas();
  let fds = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (/kvm|snapvm/.test(Deno.readLinkSync(`/proc/self/fd/${e.name}`))) fds++;
    } catch {
      // closed meanwhile
    }
  }
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n");
  return { fds, vcpuMappings: maps.filter((l) => l.includes("kvm-vcpu")).length };
}

function worker(
  run: "cycle" | "spin" | "spinAsync" | "hot",
): { w: Worker; messages: AsyncGenerator<unknown> } {
  const w = new Worker(WORKER, { type: "module" });
  const queue: unknown[] = [];
  let wake: (() => void) | undefined;
  w.onmessage = (e) => {
    queue.push(e.data);
    wake?.();
  };
  w.postMessage({ run });
  async function* messages() {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => wake = r);
      yield queue.shift();
    }
  }
  return { w, messages: messages() };
}

vmTest(
  "30 Workers that close their sandboxes and end leave none of snapvm's fds or vCPU mappings",
  async () => {
    // The main thread's own idle VMs exist before the baseline, as in any long-lived process.
    new UninitializedSandbox(guestPath("attackguest")).evolve().close();
    const before = ours();
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 10 }, async () => {
        const { messages } = worker("cycle");
        assert.equal((await messages.next()).value, "done");
      }));
    }
    assert.deepEqual(ours(), before);
  },
);

vmTest(
  "a call without a time limit in a Worker is stopped by an interrupt handle; the Worker then ends",
  async () => {
    const { w, messages } = worker("spin");
    const handle = InterruptHandle.from((await messages.next()).value as never);
    await new Promise((r) => setTimeout(r, 100)); // the guest spins in KVM_RUN now
    assert.equal(handle.kill(), true);
    assert.equal((await messages.next()).value, "ExecutionCanceledError");
    w.terminate();
  },
);

/** Whether a thread of this process with this id exists, and its name. */
function thread(tid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/self/task/${tid}/comm`).trim();
  } catch {
    return undefined;
  }
}

for (const run of ["spinAsync", "hot"] as const) {
  vmTest(
    `terminating a Worker with ${
      run === "hot" ? "a hot sandbox's" : "an"
    } async call in flight ends its run thread and releases the vCPU`,
    async () => {
      // Workers of earlier tests may still be releasing their VMs: start from a count that holds still.
      let before = ours().vcpuMappings;
      for (let i = 0; i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const now = ours().vcpuMappings;
        if (now === before) break;
        before = now;
      }
      const { w, messages } = worker(run);
      const { tid } = (await messages.next()).value as { tid: number };
      assert.equal(thread(tid), "snapvm-vcpu", "the call runs on a run thread");
      // The Worker's own VMs: its keeper VM and the sandbox's (kvm_run, and the dirty ring where there is one).
      assert.ok(ours().vcpuMappings >= before + 2);
      w.terminate();
      // Bounded: the run thread looks at its owner at every heartbeat (100 ms in a Worker).
      for (let i = 0; i < 200 && thread(tid) !== undefined; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(thread(tid), undefined, "the run thread ended");
      assert.equal(ours().vcpuMappings, before + 1, "the sandbox's vCPU is released (the keeper stays)");
    },
  );
}
