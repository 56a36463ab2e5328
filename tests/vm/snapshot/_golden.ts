/**
 * The recipe of the golden snapshot file tests/golden/testguest-call.hls, shared by the script that makes it
 * (tests/_snapshot_make_golden.ts) and the test that checks it (tests/snapshot_golden_test.ts).
 *
 * @module
 */
import { testguest } from "./_util.ts";

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
  await snap.toFile(path);
}
