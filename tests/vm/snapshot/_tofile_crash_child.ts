/**
 * Child of tests/tofile_crash_test.ts: builds a large snapshot (a testguest with a big, fully written heap and
 * `marker` in its static), prints `ready`, writes it to `path` with `toFile`, prints `written <ms>`. The
 * parent kills it with SIGKILL at a random point after `ready`.
 *
 * Usage: deno run -A tests/_tofile_crash_child.ts <path> <marker> <heap MiB>
 */
import { UninitializedSandbox } from "../../../mod.ts";

const [path, marker, heapMiB] = Deno.args;
const guest = decodeURIComponent(new URL("../../../guest/bin/testguest", import.meta.url).pathname);
// guestInitArg bit 0: init writes every heap page, so the blob is not mostly zeros.
const u = new UninitializedSandbox(guest, { heapSize: Number(heapMiB) * 1024 * 1024, guestInitArg: 1n });
const sbx = u.evolve();
sbx.call("AddToStatic", Number(marker));
const snap = sbx.snapshot();
console.log("ready");
const t0 = performance.now();
await snap.toFile(path);
console.log(`written ${(performance.now() - t0).toFixed(1)}`);
