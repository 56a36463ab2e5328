/**
 * Concurrency: several Workers run their own sandboxes from one shared snapshot file at the same time
 * (loaded with `fromFile`, `fromFileUnchecked` and `fromFileCached`), while one of them is cancelled over
 * and over through an interrupt handle from the main thread. Every result must be correct, every
 * cancellation must end in `ExecutionCanceledError`, and nothing else may be interrupted.
 */
import assert from "node:assert/strict";
import { InterruptHandle, UninitializedSandbox } from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

const STEADY_WORKERS = 3;
const VICTIM_ROUNDS = 60;
const BASE = 7;

interface Done {
  iterations: number;
  errors: string[];
}

vmTest("workers share one snapshot file; one is cancelled repeatedly; all results correct", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "snapvm-concurrency-" });
  const path = `${dir}/shared.hls`;
  const workers: Worker[] = [];
  try {
    {
      const u = new UninitializedSandbox(guestPath("testguest"));
      u.registerHostFunction(
        "Add",
        { params: ["i32", "i32"], returns: "i32" },
        (a: number, b: number) => a + b,
      );
      using sbx = u.evolve();
      sbx.call("AddToStatic", BASE);
      await sbx.snapshot().toFile(path);
    }
    const stop = new SharedArrayBuffer(4);
    const loads = ["fromFile", "fromFileUnchecked", "fromFileCached"] as const;
    const results: Promise<Done>[] = [];
    let kills = 0;
    for (let id = 0; id <= STEADY_WORKERS; id++) {
      const role = id === 0 ? "victim" : "steady";
      const w = new Worker(new URL("./_concurrency_worker.ts", import.meta.url), { type: "module" });
      workers.push(w);
      results.push(
        new Promise<Done>((resolve, reject) => {
          w.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`worker ${id}: ${e.message}`));
          };
          w.onmessage = async (e) => {
            if (e.data.done) return resolve(e.data.done);
            // The victim is about to Spin: kill the call as soon as it runs.
            const handle = InterruptHandle.from(e.data.handle);
            while (!handle.kill()) await new Promise((r) => setTimeout(r, 1));
            kills++;
          };
        }),
      );
      w.postMessage({
        id,
        role,
        path,
        load: loads[id % loads.length],
        stop,
        rounds: VICTIM_ROUNDS,
        minIterations: 200,
        base: BASE,
      });
    }
    const done = await Promise.all(results);
    const errors = done.flatMap((d) => d.errors);
    assert.deepEqual(errors, [], errors.slice(0, 10).join("\n"));
    assert.equal(done[0].iterations, VICTIM_ROUNDS);
    assert.equal(kills, VICTIM_ROUNDS);
    for (let id = 1; id <= STEADY_WORKERS; id++) assert.ok(done[id].iterations >= 200, `worker ${id}`);
    console.log(`iterations per worker: ${done.map((d) => d.iterations).join(", ")}; kills ${kills}`);
  } finally {
    for (const w of workers) w.terminate();
    Deno.removeSync(dir, { recursive: true });
  }
});
