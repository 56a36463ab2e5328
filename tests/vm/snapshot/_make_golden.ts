/**
 * Regenerates tests/golden/testguest-call.hls (see tests/golden/README.md). Run from the repository root:
 *
 *   deno run -A tests/vm/snapshot/_make_golden.ts [--delta-only]
 *
 * @module
 */
import { GOLDEN_CONFIG, GOLDEN_DELTA_PATH, GOLDEN_PATH, makeGolden, makeGoldenDelta } from "./_golden.ts";

if (!Deno.args.includes("--delta-only")) await makeGolden(GOLDEN_PATH);
await makeGoldenDelta(GOLDEN_DELTA_PATH, GOLDEN_PATH);
console.log(`wrote ${GOLDEN_DELTA_PATH} (a delta over ${GOLDEN_PATH})`);
console.log(`wrote ${GOLDEN_PATH}; update the pinned values in tests/vm/snapshot/golden_test.ts`);
console.log(`recipe: testguest, ${JSON.stringify(GOLDEN_CONFIG)}, Add registered, AddToStatic(41)`);
