/**
 * Crash safety of `toFile`: a child process writing a large snapshot over an existing one is killed with
 * SIGKILL at random points (seeded). Afterwards the target holds either the complete old file or the
 * complete new one, and `fromFile` (both hashes) loads it; the next successful write leaves no temporary
 * file behind.
 */
import assert from "node:assert/strict";
import { MultiUseSandbox, Snapshot, UninitializedSandbox } from "../../../mod.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";
import { Rng } from "../../fuzz/_rng.ts";

/** SIGKILLs that must land while the child is still running (trials where it finished first do not count). */
const KILLS = 50;
const MAX_TRIALS = 200;
const HEAP_MIB = 24;
const OLD = 111, NEW = 222;
const SEED = 20261126;
const CHILD = decodeURIComponent(new URL("./_tofile_crash_child.ts", import.meta.url).pathname);
const CONFIG = decodeURIComponent(new URL("../../../deno.json", import.meta.url).pathname);

function tempFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.includes(".snapvm-tmp-"));
}

/** Starts the child; resolves once it printed `ready`. */
async function startChild(path: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, CHILD, path, String(NEW), String(HEAP_MIB)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child ended before it was ready: ${out}`);
    out += decoder.decode(value);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return out;
      out += decoder.decode(value);
    }
  })();
  return { child, rest };
}

/** What the file at `path` holds: the static of the snapshot in it (loads with both hashes verified). */
function marker(path: string): number {
  using snap = Snapshot.fromFile(path);
  using sbx = MultiUseSandbox.fromSnapshot(snap);
  return sbx.call("GetStatic") as number;
}

vmTest(`toFile survives SIGKILL at ${KILLS} random points: old or new file, never a torn one`, async () => {
  const dir = Deno.makeTempDirSync({ prefix: "snapvm-tofile-crash-" });
  const path = `${dir}/target.hls`;
  try {
    // The old file: same guest and size, another marker.
    const u = new UninitializedSandbox(guestPath("testguest"), {
      heapSize: HEAP_MIB * 1024 * 1024,
      guestInitArg: 1n,
    });
    using sbx = u.evolve();
    sbx.call("AddToStatic", OLD);
    using oldSnap = sbx.snapshot();
    await oldSnap.toFile(path);
    const size = Deno.statSync(path).size;

    // Calibrate: how long does the child's write take? (Only to spread the kill points; never asserted.)
    let writeMs = 0;
    for (let i = 0; i < 3; i++) {
      const calib = await startChild(`${dir}/calibration.hls`);
      await calib.child.status;
      const m = /written ([\d.]+)/.exec(await calib.rest);
      writeMs = Math.max(writeMs, m ? Number(m[1]) : 200);
      assert.equal(marker(`${dir}/calibration.hls`), NEW);
      Deno.removeSync(`${dir}/calibration.hls`);
    }

    const rng = new Rng(SEED);
    const seen = { old: 0, new: 0, killed: 0, finished: 0 };
    for (let trial = 0; seen.killed < KILLS; trial++) {
      assert.ok(trial < MAX_TRIALS, `only ${seen.killed} of ${trial} trials killed the writer`);
      const { child, rest } = await startChild(path);
      const delay = rng.int(Math.ceil(writeMs * 1.5) + 1); // over the write, the rename and just after
      await new Promise((r) => setTimeout(r, delay));
      try {
        child.kill("SIGKILL");
      } catch { /* it finished first */ }
      const status = await child.status;
      await rest;
      if (status.signal === "SIGKILL") seen.killed++;
      else seen.finished++;

      // The target is a complete file, old or new, that verifies.
      assert.equal(
        Deno.statSync(path).size,
        size,
        `trial ${trial}: file size changed (killed after ${delay} ms)`,
      );
      const got = marker(path);
      assert.ok(got === OLD || got === NEW, `trial ${trial}: the file holds marker ${got}`);
      if (got === OLD) seen.old++;
      else seen.new++;

      // The next successful write (the old snapshot again) leaves no temporary file behind.
      await oldSnap.toFile(path);
      assert.deepEqual(tempFiles(dir), [], `trial ${trial}: temporary files left after a successful write`);
      assert.equal(marker(path), OLD);
    }
    console.log(`toFile crash: ${JSON.stringify(seen)}, write ≈ ${writeMs.toFixed(0)} ms`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
