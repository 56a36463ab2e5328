/**
 * Soak: 10,000 cycles of `fromSnapshot` → call → `restore` → call → close, round-robin over several
 * snapshots (Call and Initialise, in memory and loaded from files, three guests, with and without host
 * functions), in one process. File descriptors, mappings and RSS are sampled after a warm-up and at the
 * end; the test fails on growth beyond a small fixed allowance.
 */
import assert from "node:assert/strict";
import { HostFunctions, MultiUseSandbox, Snapshot, UninitializedSandbox, type Value } from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";
import { fdCount, mapCount, nativeMapCount, rssBytes } from "../fuzz/_harness.ts";

const CYCLES = 10_000;
const WARM_UP = 300;
/** Allowances: fds must not grow at all; native mappings (guest memory, snapshots, kvm_run) by at most 4. */
const FD_ALLOWANCE = 0;
const NATIVE_MAP_ALLOWANCE = 4;
/** All mappings, including V8's heap pages, which come and go with the JS heap. */
const MAP_ALLOWANCE = 64;
/** RSS may move with the JS heap and allocator caches, but not by a leaked guest memory per cycle. */
const RSS_ALLOWANCE = 48 * 1024 * 1024;

interface Subject {
  name: string;
  snap: Snapshot;
  fns?: HostFunctions;
  /** Call, expected result; the call after restore must give the same. */
  probe: [string, Value[], Value];
  /** A call that changes persistent state, so restore has pages to copy back. */
  dirty?: [string, Value[]];
}

function sample() {
  return { fds: fdCount(), native: nativeMapCount(), maps: mapCount(), rss: rssBytes() };
}

vmTest(`soak: ${CYCLES} cycles of fromSnapshot, call, restore, close leak nothing`, async () => {
  const dir = Deno.makeTempDirSync({ prefix: "snapvm-soak-" });
  const subjects: Subject[] = [];
  try {
    const add = new HostFunctions()
      .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b)
      .registerPrint(() => {});
    {
      const u = new UninitializedSandbox(guestPath("testguest"), { heapSize: 256 * 1024 }, add);
      using sbx = u.evolve();
      sbx.call("AddToStatic", 10);
      subjects.push({
        name: "testguest Call (memory)",
        snap: sbx.snapshot(),
        fns: add,
        probe: ["Add", [2, 3], 5],
        dirty: ["TouchPages", [8]],
      });
      subjects.push({
        name: "testguest Initialise (memory)",
        snap: u.snapshot(),
        fns: add,
        probe: ["GetStatic", [], 0],
        dirty: ["AddToStatic", [1]],
      });
      await sbx.snapshot().toFile(`${dir}/testguest.hls`);
    }
    subjects.push({
      name: "testguest Call (fromFile)",
      snap: Snapshot.fromFile(`${dir}/testguest.hls`),
      fns: add,
      probe: ["GetStatic", [], 10],
      dirty: ["Malloc", [20000n]],
    });
    {
      using sbx = new UninitializedSandbox(guestPath("hello")).evolve();
      await sbx.snapshot().toFile(`${dir}/hello.hls`);
    }
    subjects.push({
      name: "hello Call (fromFileUnchecked)",
      snap: Snapshot.fromFileUnchecked(`${dir}/hello.hls`),
      probe: ["Twice", [21n], 42n],
    });
    {
      using sbx = new UninitializedSandbox(guestPath("fuzzguest")).evolve();
      sbx.call("Counter");
      subjects.push({
        name: "fuzzguest Call (memory)",
        snap: sbx.snapshot(),
        probe: ["Peek", [0x200000n], 0xfa], // first code byte (endbr64 is off: a plain instruction byte)
        dirty: ["Counter", []],
      });
    }
    // The fuzzguest's first code byte is whatever the compiler put there: learn it once.
    {
      using s = MultiUseSandbox.fromSnapshot(subjects[4].snap);
      subjects[4].probe[2] = s.call("Peek", 0x200000n);
    }

    const cycle = (i: number) => {
      const s = subjects[i % subjects.length];
      using sbx = MultiUseSandbox.fromSnapshot(s.snap, s.fns);
      const [fn, args, want] = s.probe;
      assert.deepEqual(sbx.call(fn, ...args), want, `${s.name}: first call of cycle ${i}`);
      if (s.dirty) sbx.call(s.dirty[0], ...s.dirty[1]);
      sbx.restore(s.snap);
      assert.deepEqual(sbx.call(fn, ...args), want, `${s.name}: call after restore in cycle ${i}`);
    };

    for (let i = 0; i < WARM_UP; i++) cycle(i);
    const before = sample();
    for (let i = 0; i < CYCLES / 2; i++) cycle(i);
    const middle = sample();
    for (let i = CYCLES / 2; i < CYCLES; i++) cycle(i);
    const after = sample();

    const report = `before ${JSON.stringify(before)}, middle ${JSON.stringify(middle)}, after ${
      JSON.stringify(after)
    }`;
    console.log(`soak: ${report}`);
    assert.ok(after.fds <= before.fds + FD_ALLOWANCE, `fds grew: ${report}`);
    assert.ok(after.native <= before.native + NATIVE_MAP_ALLOWANCE, `native mappings grew: ${report}`);
    assert.ok(after.maps <= before.maps + MAP_ALLOWANCE, `mappings grew: ${report}`);
    assert.ok(
      after.rss <= before.rss + RSS_ALLOWANCE,
      `RSS grew by ${(after.rss - before.rss) >> 20} MiB: ${report}`,
    );
    // No steady climb either: the second half may not add more than the allowance on its own.
    assert.ok(after.rss <= middle.rss + RSS_ALLOWANCE / 2, `RSS still climbing: ${report}`);
  } finally {
    for (const s of subjects) s.snap.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
