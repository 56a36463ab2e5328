/**
 * The guest every benchmark runs (`guest/bin/testguest`, built by `deno task build`), its host functions,
 * and the steps the tables repeat with it: writing a snapshot file, and a cold start from one.
 *
 * @module
 */
import { HostFunctions, MultiUseSandbox, type Snapshot, UninitializedSandbox } from "../mod.ts";

/** Path of the test guest. */
export const GUEST: string = decodeURIComponent(new URL("../guest/bin/testguest", import.meta.url).pathname);

/** The host functions the test guest imports. */
export function hostFunctions(): HostFunctions {
  return new HostFunctions().register(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    (a: number, b: number) => a + b,
  );
}

const fns = hostFunctions();

/**
 * An uninitialised sandbox of the test guest with a `heapSize`-byte heap. With `dense` its init writes
 * every heap page (init argument bit 0), as a real pre-initialising guest would, so that a snapshot holds
 * data rather than holes.
 */
export function guestSandbox(heapSize: number, dense = true): UninitializedSandbox {
  return new UninitializedSandbox(
    GUEST,
    { heapSize, guestInitArg: dense ? 1 : 0, maxExecutionTimeMs: 0 },
    fns,
  );
}

/** Writes a snapshot of the test guest after init (heap written when `dense`) to `path`. */
export async function writeGuestSnapshot(path: string, heapSize: number, dense = true): Promise<void> {
  using sbx = guestSandbox(heapSize, dense).evolve();
  using snap = sbx.snapshot();
  await snap.toFile(path);
}

/**
 * A cold start: `load()`, a sandbox from the snapshot, its first `Echo`. Returns the milliseconds it took;
 * closes the sandbox and (unless `keep`) the snapshot afterwards, untimed. With `phases`, appends the
 * three steps' times (load, fromSnapshot, Echo) to its three lists.
 */
export function coldStart(
  load: () => Snapshot,
  options: { keep?: boolean; phases?: number[][] } = {},
): number {
  const t0 = performance.now();
  const snap = load();
  const t1 = performance.now();
  const sbx = MultiUseSandbox.fromSnapshot(snap, fns);
  const t2 = performance.now();
  sbx.call("Echo", "x");
  const t3 = performance.now();
  sbx.close();
  if (!options.keep) snap.close();
  options.phases?.forEach((list, i) => list.push([t1 - t0, t2 - t1, t3 - t2][i]));
  return t3 - t0;
}
