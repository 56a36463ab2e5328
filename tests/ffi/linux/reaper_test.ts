/**
 * The reaper (ffi/linux/reaper.ts, `snapvm_reaper` in vm/kvm/_run_thread.c): the table layout has one owner
 * that the C code mirrors, the main thread tracks nothing, and a Worker's reaper releases what the Worker
 * tracked, and only that, once the Worker has gone, then ends.
 */
import assert from "node:assert/strict";
import {
  MAX_OWNED,
  OWNED,
  OWNED_KIND,
  REAPER,
  REAPER_NAME,
  trackedResources,
  trackFd,
  untrackFd,
} from "../../../ffi/linux/reaper.ts";
import { libc, MFD_CLOEXEC } from "../../../ffi/linux/libc.ts";

const LINUX = Deno.build.os === "linux";
const WORKER = new URL("./_reaper_worker.ts", import.meta.url);
const C_SOURCE = new URL("../../../vm/kvm/_run_thread.c", import.meta.url);

Deno.test("the C reaper asserts the table layout reaper.ts declares", async () => {
  const c = await Deno.readTextFile(C_SOURCE);
  const asserted = new Map<string, number>();
  for (
    const m of c.matchAll(/_Static_assert\(__builtin_offsetof\(struct (reaper|owned), (\w+)\) == (\d+)/g)
  ) {
    asserted.set(`${m[1]}.${m[2]}`, Number(m[3]));
  }
  assert.equal(asserted.get("reaper.size"), REAPER.SIZE);
  assert.equal(asserted.get("reaper.pthread"), REAPER.PTHREAD);
  assert.equal(asserted.get("reaper.name"), REAPER.NAME);
  assert.equal(asserted.get("reaper.entries"), REAPER.ENTRIES);
  assert.match(c, new RegExp(`_Static_assert\\(sizeof\\(struct owned\\) == ${OWNED.SIZE},`));
  // Every field offset, in declaration order, as the C struct lays them out (no padding surprises).
  const struct = (name: string) =>
    c.slice(c.indexOf(`struct ${name} {`), c.indexOf("};", c.indexOf(`struct ${name} {`)));
  const offsets = (text: string) => [...text.matchAll(/\/\* (\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(offsets(struct("owned")), [OWNED.KIND, OWNED.FD, OWNED.A, OWNED.B]);
  assert.deepEqual(offsets(struct("reaper")), [
    REAPER.OWNER_TID,
    REAPER.OWNER_PIDFD,
    REAPER.PID,
    REAPER.POLL_MS,
    REAPER.GRACE_MS,
    REAPER.USED,
    REAPER.SIZE,
    REAPER.JOIN,
    REAPER.DETACH,
    REAPER.PTHREAD,
    REAPER.NAME,
    REAPER.ENTRIES,
  ]);
  for (const [kind, value] of Object.entries(OWNED_KIND)) {
    assert.match(c, new RegExp(`#define OWNED_${kind} ${value}\\b`));
  }
  assert.ok(MAX_OWNED * OWNED.SIZE < 2 * 1024 * 1024, "the table stays small");
});

Deno.test({
  name: "on the main thread nothing is tracked and no reaper starts",
  ignore: !LINUX,
  fn() {
    const fd = libc().memfd_create(new TextEncoder().encode("snapvm-main\0"), MFD_CLOEXEC);
    assert.equal(trackFd(fd), fd);
    assert.deepEqual(trackedResources(), { fds: [], mappings: [], timers: [], runThreads: [] });
    untrackFd(fd);
    libc().close(fd);
    assert.equal(reapers(), 0);
  },
});

/** This process's reaper threads. */
function reapers(): number {
  let n = 0;
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      if (Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`).trim() === REAPER_NAME) n++;
    } catch {
      // ended meanwhile
    }
  }
  return n;
}

function link(fd: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

function timerIds(): number[] {
  return Deno.readTextFileSync("/proc/self/timers").split("\n").filter((l) => l.startsWith("ID:"))
    .map((l) => Number(l.slice(3)));
}

async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(done(), what);
}

/** A Worker of _reaper_worker.ts, and a function that sends it a message and resolves with its answer. */
function worker() {
  const w = new Worker(WORKER, { type: "module" });
  const ask = (message: string) =>
    new Promise<Record<string, unknown>>((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.postMessage(message);
    });
  return { w, ask };
}

Deno.test({
  name: "a terminated Worker's fds, mappings and timers are released; then its reaper ends",
  ignore: !LINUX,
  async fn() {
    const { w, ask } = worker();
    try {
      const { fd, address, timer } = await ask("track") as { fd: number; address: string; timer: number };
      assert.match(link(fd) ?? "", /snapvm-reaper-test/);
      assert.ok(timerIds().includes(timer));
      // The reaper names itself once it runs, which may be a moment after the Worker's answer.
      await until("the reaper has started", () => reapers() === 1);
      w.terminate();
      await until("the memfd is closed", () => !/snapvm-reaper-test/.test(link(fd) ?? ""));
      await until("the timer is deleted", () => !timerIds().includes(timer));
      await until(
        "the mapping is gone",
        () => !Deno.readTextFileSync("/proc/self/maps").includes(`\n${address}-`),
      );
      await until("the reaper has ended", () => reapers() === 0);
    } finally {
      w.terminate(); // a failed check above must not leave the Worker, and its reaper, for the next tests
    }
  },
});

Deno.test({
  name: "an fd untracked before its release is not the reaper's: it stays open",
  ignore: !LINUX,
  async fn() {
    const { w, ask } = worker();
    const { fd } = await ask("untracked") as { fd: number };
    w.terminate();
    await until("the reaper has ended", () => reapers() === 0);
    assert.match(link(fd) ?? "", /snapvm-reaper-untracked/);
    libc().close(fd);
  },
});

Deno.test({
  name: "a full table refuses with ResourceExhaustedError and releases what it could not track",
  ignore: !LINUX,
  async fn() {
    const { w, ask } = worker();
    const { fd, error, tracked } = await ask("full") as { fd: number; error: string; tracked: number };
    assert.match(error, /^ResourceExhaustedError: Out of native resources of one Worker/);
    assert.ok(!/snapvm-reaper-overflow/.test(link(fd) ?? ""), "the fd it could not track is closed");
    assert.equal(tracked, 0);
    w.terminate();
    await until("the reaper has ended", () => reapers() === 0);
  },
});

Deno.test({
  name: "a Worker that ends with nothing open ends its reaper too, table and pidfd included",
  ignore: !LINUX,
  async fn() {
    const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    const maps = () => Deno.readTextFileSync("/proc/self/maps").split("\n").length;
    // Warm up: the process's first Worker leaves V8's and the C library's caches behind.
    for (let i = 0; i < 2; i++) {
      const { ask } = worker();
      await ask("untracked").then(({ fd }) => libc().close(fd as number));
      assert.deepEqual(await ask("end"), { empty: true });
      await until("the reaper has ended", () => reapers() === 0);
    }
    const before = { fds: fds(), maps: maps() };
    for (let i = 0; i < 5; i++) {
      const { ask } = worker();
      await ask("untracked").then(({ fd }) => libc().close(fd as number));
      assert.deepEqual(await ask("end"), { empty: true });
      await until("the reaper has ended", () => reapers() === 0);
    }
    await until("fds are back", () => fds() === before.fds);
    assert.ok(maps() <= before.maps + 2, `mappings grew from ${before.maps} to ${maps()}`);
  },
});
