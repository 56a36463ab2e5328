/**
 * The recipe of the golden snapshot file tests/golden/testguest-call.hls, shared by the script that makes it
 * (tests/_snapshot_make_golden.ts) and the test that checks it (tests/snapshot_golden_test.ts).
 *
 * @module
 */
import { MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { Blob } from "../../../vm/memory/blob.ts";
import { live, snapshotOf } from "../../../vm/snapshot.ts";
import { hostFns, testguest } from "./_util.ts";

/** Where the golden file lives. */
export const GOLDEN_PATH: string = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;

/** The configuration of the golden sandbox: not the defaults, so that a layout taken from elsewhere shows. */
export const GOLDEN_CONFIG = {
  heapSize: 256 * 1024,
  stackSize: 32 * 1024,
  inputDataSize: 8 * 1024,
  outputDataSize: 12 * 1024,
} as const;

/** The test guest (with `Add` registered), after `AddToStatic(41)`, saved to `path`. */
export async function makeGolden(path: string): Promise<void> {
  using sbx = testguest(GOLDEN_CONFIG).evolve();
  if (sbx.call("AddToStatic", 41) !== 41) throw new Error("AddToStatic(41) did not return 41");
  using snap = sbx.snapshot();
  // A version-1 file: no section, not even the binary's path (which would depend on the checkout).
  await snap.toFile(path, { binary: false, workingSet: false });
}

/** Where the golden delta (version 2) lives: next to its base, the golden file. */
export const GOLDEN_DELTA_PATH: string =
  new URL("../../golden/testguest-call-delta.hls", import.meta.url).pathname;

/** The BINARY section of the golden delta (a fixed path, so the file does not depend on the checkout). */
export const GOLDEN_DELTA_BINARY = { path: "guest/bin/testguest", entry: 0x200000n } as const;

/** The WORKING_SET section of the golden delta (fixed, not recorded: recording depends on the host). */
export const GOLDEN_DELTA_WORKING_SET = [{ first: 5, count: 4 }, { first: 512, count: 9 }] as const;

/**
 * The golden delta: a sandbox from the golden file, `AddToStatic(1)`, snapshotted with the binary and
 * working set above, written as a delta over the golden file (`base` in the same directory).
 */
export async function makeGoldenDelta(path: string, base: string): Promise<void> {
  using golden = Snapshot.fromFile(base);
  using sbx = MultiUseSandbox.fromSnapshot(golden, hostFns());
  if (sbx.call("AddToStatic", 1) !== 42) throw new Error("AddToStatic(1) did not return 42");
  using plain = sbx.snapshot();
  const { blob, data } = live(plain);
  using snap = snapshotOf(Blob.copyOf(blob.ref), {
    ...data,
    binary: GOLDEN_DELTA_BINARY,
    workingSet: GOLDEN_DELTA_WORKING_SET,
  });
  await snap.toFile(path, { base });
}
