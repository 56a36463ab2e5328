/// <reference lib="deno.worker" />
/**
 * Worker of tests/concurrency_test.ts. Loads the shared snapshot file itself and runs sandboxes from it.
 *
 * - `steady`: until the stop flag is set (and at least `minIterations`), cycles fromSnapshot / restore and
 *   checks every result.
 * - `victim`: `rounds` times, posts its sandbox's interrupt handle, runs `Spin` until the main thread kills
 *   it, then restores and checks that the sandbox and a second sandbox in the same thread still work.
 *
 * Posts `{ handle, round }` (victim, before each Spin) and finally `{ done: { iterations, errors } }`.
 */
import {
  ExecutionCanceledError,
  HostFunctions,
  MultiUseSandbox,
  type Snapshot,
  Snapshot as SnapshotClass,
} from "../../mod.ts";

interface Job {
  id: number;
  role: "steady" | "victim";
  path: string;
  load: "fromFile" | "fromFileUnchecked" | "fromFileCached";
  stop: SharedArrayBuffer;
  rounds: number;
  minIterations: number;
  /** GetStatic of the snapshot. */
  base: number;
}

const errors: string[] = [];
function expect(what: string, got: unknown, want: unknown): void {
  if (got !== want) errors.push(`${what}: got ${String(got)}, expected ${String(want)}`);
}

function load(job: Job): Snapshot {
  return SnapshotClass[job.load](job.path);
}

function hostFunctions(id: number): HostFunctions {
  return new HostFunctions()
    .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b + 1000 * id)
    .registerPrint(() => {});
}

function steady(job: Job): number {
  const snap = load(job);
  const fns = hostFunctions(job.id);
  const stop = new Int32Array(job.stop);
  let sbx = MultiUseSandbox.fromSnapshot(snap, fns);
  let i = 0;
  try {
    for (; i < job.minIterations || Atomics.load(stop, 0) === 0; i++) {
      if (i % 25 === 0) {
        sbx.close();
        sbx = MultiUseSandbox.fromSnapshot(snap, fns);
      } else {
        sbx.restore(snap);
      }
      expect(`worker ${job.id} GetStatic`, sbx.call("GetStatic"), job.base);
      expect(`worker ${job.id} AddToStatic`, sbx.call("AddToStatic", job.id), job.base + job.id);
      expect(`worker ${job.id} EchoI32`, sbx.call("EchoI32", i), i);
      expect(`worker ${job.id} Add`, sbx.call("Add", i, 1), i + 1 + 1000 * job.id);
      expect(`worker ${job.id} Echo`, sbx.call("Echo", `w${job.id}-${i}`), `w${job.id}-${i}`);
      if (errors.length > 20) break;
    }
  } finally {
    sbx.close();
    snap.close();
  }
  return i;
}

function victim(job: Job): number {
  const snap = load(job);
  const fns = hostFunctions(job.id);
  let sbx = MultiUseSandbox.fromSnapshot(snap, fns, { maxExecutionTimeMs: 30_000 });
  using other = MultiUseSandbox.fromSnapshot(snap, fns); // a second sandbox on the same thread
  let round = 0;
  try {
    for (; round < job.rounds; round++) {
      if (round % 10 === 9) {
        sbx.close();
        sbx = MultiUseSandbox.fromSnapshot(snap, fns, { maxExecutionTimeMs: 30_000 });
      }
      self.postMessage({ handle: sbx.interruptHandle(), round });
      try {
        sbx.call("Spin");
        errors.push(`victim round ${round}: Spin returned`);
      } catch (e) {
        if (!(e instanceof ExecutionCanceledError) || e.reason !== "interrupted") {
          errors.push(`victim round ${round}: ${e}`);
        }
      }
      expect(`victim round ${round} poisoned`, sbx.poisoned, true);
      sbx.restore(snap);
      expect(`victim round ${round} GetStatic after restore`, sbx.call("GetStatic"), job.base);
      expect(`victim round ${round} EchoI32`, sbx.call("EchoI32", round), round);
      expect(`victim round ${round} other sandbox`, other.call("AddToStatic", 1), job.base + round + 1);
    }
  } finally {
    Atomics.store(new Int32Array(job.stop), 0, 1);
    sbx.close();
    snap.close();
  }
  return round;
}

self.onmessage = (e: MessageEvent<Job>) => {
  let iterations = 0;
  try {
    iterations = e.data.role === "victim" ? victim(e.data) : steady(e.data);
  } catch (err) {
    errors.push(`worker ${e.data.id} threw ${(err as Error)?.stack ?? err}`);
    Atomics.store(new Int32Array(e.data.stop), 0, 1);
  }
  self.postMessage({ done: { iterations, errors } });
};
