/**
 * Workers: one that ends leaves no descriptor or vCPU mapping of snapvm's behind, and a call without a time
 * limit in a Worker can be stopped from another thread, after which the Worker can be terminated.
 *
 * (Deno 2.9 cannot terminate a Worker while it runs synchronous code, any code: denoland/deno#35657. A
 * guest call is synchronous, so a call without a limit must be stopped with an interrupt handle first. An
 * asynchronous call leaves the event loop free, so such a Worker can be terminated: its reaper then stops
 * the run thread and releases everything the Worker left open, see ffi/linux/reaper.ts.)
 */
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { InterruptHandle, UninitializedSandbox } from "../../mod.ts";
import { dropIdleSystemAreas } from "../../vm/machine/system_image.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

const WORKER = new URL("./_sandbox_worker.ts", import.meta.url);

/**
 * snapvm's own descriptors (KVM, /dev/kvm, snapshot memfds), vCPU mappings and mappings of the native
 * restore library (one per thread that loaded it) in this process.
 */
function ours(): { fds: number; vcpuMappings: number; restoreLibrary: number } {
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
  return {
    fds,
    vcpuMappings: maps.filter((l) => l.includes("kvm-vcpu")).length,
    restoreLibrary: maps.filter((l) => l.includes("/memfd:snapvm-restore")).length,
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  "30 Workers that restore and close their sandboxes and end leave none of snapvm's fds or mappings",
  async () => {
    // The main thread's own idle VMs and restore library exist before the baseline, as in any long-lived
    // process.
    {
      using sbx = new UninitializedSandbox(guestPath("attackguest")).evolve();
      using snap = sbx.snapshot();
      sbx.restore(snap);
    }
    const before = ours();
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 10 }, async () => {
        const { messages } = worker("cycle");
        assert.equal((await messages.next()).value, "done");
      }));
    }
    // A Worker's own caches (the system area its snapshot built) go when its thread has ended, a moment
    // after its last message: wait for that, at most 5 s.
    for (let i = 0; i < 50 && !isDeepStrictEqual(ours(), before); i++) await delay(100);
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
      // Bounded: the Worker's reaper stops its run threads as soon as the Worker's thread has gone.
      for (let i = 0; i < 200 && thread(tid) !== undefined; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(thread(tid), undefined, "the run thread ended");
      // The reaper unmaps after a grace period (ffi/linux/reaper.ts): the keeper's and the sandbox's go.
      for (let i = 0; i < 100 && ours().vcpuMappings !== before; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(ours().vcpuMappings, before, "the sandbox's vCPU and the keeper are released");
    },
  );
}

// ---- The reaper: a Worker that ends without closing what it made leaves nothing behind -------------------

const REAPER_WORKER = new URL("./_reaper_worker.ts", import.meta.url);

/** What the process holds that a Worker's leak would grow (see the fields). */
interface Census {
  /** Open fds, all of them. */
  fds: number;
  /** Fds that are snapvm's kind: KVM, /dev/kvm, snapshot memfds, pidfds, sockets. */
  ourFds: number;
  /** Mappings of vCPUs, memfds and snapshot files (the test's files are named snapvm-*). */
  ourMappings: number;
  /** Anonymous mappings of 2 MiB or more: guest memory (thread stacks too, cached by the C library). */
  bigAnonymous: number;
  /** POSIX timers of the process. */
  timers: number;
  /** Threads by name: snapvm's, and the kernel's NX huge page thread of each VM that ran. */
  reapers: number;
  runThreads: number;
  vmThreads: number;
}

function census(): Census {
  dropIdleSystemAreas();
  let fds = 0, ourFds = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    fds++;
    try {
      if (/kvm|snapvm|pidfd|socket/.test(Deno.readLinkSync(`/proc/self/fd/${e.name}`))) ourFds++;
    } catch {
      // closed meanwhile (the directory's own fd)
    }
  }
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l !== "");
  const bigAnonymous = maps.filter((l) => {
    const [range, , , , inode, path] = l.split(/\s+/);
    const [lo, hi] = range.split("-").map((h) => parseInt(h, 16));
    return inode === "0" && (path ?? "") === "" && hi - lo >= 2 * 1024 * 1024;
  }).length;
  const names: string[] = [];
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      names.push(Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`).trim());
    } catch {
      // ended meanwhile
    }
  }
  let timers = 0;
  try {
    timers = Deno.readTextFileSync("/proc/self/timers").split("\n").filter((l) => l.startsWith("ID:")).length;
  } catch {
    // no CONFIG_CHECKPOINT_RESTORE: not counted
  }
  return {
    fds,
    ourFds,
    ourMappings: maps.filter((l) => /kvm|snapvm/.test(l)).length,
    bigAnonymous,
    timers,
    reapers: names.filter((n) => n === "snapvm-reaper").length,
    runThreads: names.filter((n) => n === "snapvm-vcpu").length,
    vmThreads: names.filter((n) => n.startsWith("kvm-nx-lpage")).length,
  };
}

/** Waits (bounded) until the census is back at `before` (`bigAnonymous` at most that); returns the last one. */
async function settle(before: Census): Promise<Census> {
  let now = census();
  for (let i = 0; i < 200; i++) {
    const { bigAnonymous, ...rest } = now;
    const { bigAnonymous: was, ...then } = before;
    if (bigAnonymous <= was && JSON.stringify(rest) === JSON.stringify(then)) break;
    await new Promise((r) => setTimeout(r, 50));
    now = census();
  }
  return now;
}

type Tracked = {
  fds: number[];
  mappings: { address: string; size: number; perms: string }[];
  timers: string[];
};

/** Starts a reaper Worker on `run`; resolves with its Worker, a message queue and its first message. */
async function reaperWorker(run: string, path?: string) {
  const w = new Worker(REAPER_WORKER, { type: "module" });
  const queue: unknown[] = [];
  let wake: (() => void) | undefined;
  w.onmessage = (e) => {
    queue.push(e.data);
    wake?.();
  };
  w.postMessage({ run, path });
  const next = async () => {
    while (queue.length === 0) await new Promise<void>((r) => wake = r);
    return queue.shift() as Record<string, unknown>;
  };
  const first = await next();
  return { w, next, tracked: first.tracked as Tracked, first };
}

/** Each mapping the Worker tracked is gone from the process (no mapping starts there with that size). */
function assertUnmapped(tracked: Tracked): void {
  const starts = new Set(
    Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l !== "").map((l) => {
      const [lo, hi] = l.split(" ")[0].split("-").map((h) => BigInt(`0x${h}`));
      return `${lo}:${hi - lo}`;
    }),
  );
  for (const m of tracked.mappings) {
    assert.ok(
      !starts.has(`${m.address}:${m.size}`),
      `mapping at 0x${BigInt(m.address).toString(16)} remains`,
    );
  }
}

/** A snapshot file of the test guest, named so that its mappings count as snapvm's. */
async function snapshotFile(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-reaper-" });
  const path = `${dir}/snapvm-testguest.hls`;
  using sbx = new UninitializedSandbox(guestPath("testguest")).evolve();
  using snap = sbx.snapshot();
  await snap.toFile(path);
  return path;
}

/** Everything a scenario leaves open is released; returns what the Worker had tracked. */
async function scenario(run: "keep" | "close" | "spin" | "debug", path: string): Promise<Tracked> {
  const { w, next, tracked, first } = await reaperWorker(run, path);
  assert.ok(tracked.fds.length > 0 && tracked.mappings.length > 0, "the Worker's resources are tracked");
  if (run === "spin") {
    await new Promise((r) => setTimeout(r, 100)); // in the guest now
    // Deno cannot end a Worker inside a synchronous call (denoland/deno#35657): terminate() waits for it to
    // return, which only the interrupt handle makes it do here.
    w.terminate();
    assert.equal(InterruptHandle.from(first as never).kill(), true);
  } else if (run !== "close") {
    w.terminate();
  } else {
    void next;
  }
  return tracked;
}

let snapshotPath: string | undefined;

async function warmUp(): Promise<Census> {
  // The process's own long-lived state first: the main thread's idle VMs, the shared run-thread code, the
  // C library's cache of thread stacks, V8's worker pools.
  new UninitializedSandbox(guestPath("testguest")).evolve().close();
  snapshotPath ??= await snapshotFile();
  for (const run of ["keep", "close", "spin", "debug"] as const) await scenario(run, snapshotPath);
  let before = census();
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = census();
    if (JSON.stringify(now) === JSON.stringify(before)) break;
    before = now;
  }
  return before;
}

for (const run of ["keep", "close", "spin", "debug"] as const) {
  const what = {
    keep: "keeps an evolved sandbox open and is terminated",
    close: "keeps sandboxes, a loaded snapshot and a hot sandbox open and calls self.close()",
    spin: "is terminated during a synchronous call without a time limit (stopped by its interrupt handle)",
    debug: "listens for gdb, holds loopback sockets and is terminated",
  }[run];
  vmTest(`a Worker that ${what} leaves no fd, mapping, timer or thread behind`, async () => {
    const before = await warmUp();
    const tracked = await scenario(run, snapshotPath!);
    const after = await settle(before);
    assert.deepEqual({ ...after, bigAnonymous: 0 }, { ...before, bigAnonymous: 0 });
    assert.ok(after.bigAnonymous <= before.bigAnonymous, "guest memory");
    assertUnmapped(tracked);
  });
}

vmTest("25 Workers, each of every kind, leave the process as they found it", async () => {
  const before = await warmUp();
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n").length;
  const tracked: Tracked[] = [];
  for (let i = 0; i < 25; i++) {
    tracked.push(await scenario((["keep", "close", "spin", "debug"] as const)[i % 4], snapshotPath!));
  }
  const after = await settle(before);
  assert.deepEqual({ ...after, bigAnonymous: 0 }, { ...before, bigAnonymous: 0 });
  // Every mapping a Worker made (guest memory included) is gone, by address. Big anonymous mappings as a
  // whole may differ by a few after 25 Workers: the C library caches some threads' stacks and V8 reserves
  // heap; a guest memory leak would add one or more per Worker that kept a sandbox open (19 here).
  for (const t of tracked) assertUnmapped(t);
  assert.ok(
    after.bigAnonymous <= before.bigAnonymous + 3,
    `big anonymous mappings grew from ${before.bigAnonymous} to ${after.bigAnonymous}`,
  );
  // All mappings, V8's included: a leak of one per Worker would add 25 or more.
  const now = Deno.readTextFileSync("/proc/self/maps").split("\n").length;
  // (V8 and the C library move a few of their own between runs: up to 7 seen, so allow 12.)
  assert.ok(now <= maps + 12, `the process's mappings grew from ${maps} to ${now}`);
  await Deno.remove(snapshotPath!.slice(0, snapshotPath!.lastIndexOf("/")), { recursive: true });
  snapshotPath = undefined;
});

vmTest("a Worker that closes everything it made leaves its reaper nothing but code to unmap", async () => {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-reaper-" });
  try {
    const { tracked } = await reaperWorker("clean", `${dir}/snapvm-clean.hls`);
    // Every close untracked what it released: only the thread's machine code stays (the PVM segment reset,
    // the BLAKE3 kernel), which the reaper unmaps once the Worker has gone.
    assert.deepEqual(tracked.fds, []);
    assert.deepEqual(tracked.timers, []);
    for (const m of tracked.mappings) assert.match(m.perms, /^r.x/, `tracked mapping is code: ${m.perms}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
