/**
 * Regenerates tests/golden/testguest-call.hls (see tests/golden/README.md). Run from the repository root:
 *
 *   deno run -A tests/_snapshot_make_golden.ts
 *
 * @module
 */
import { GOLDEN_CONFIG, GOLDEN_PATH, makeGolden } from "./_golden.ts";

await makeGolden(GOLDEN_PATH);
console.log(`wrote ${GOLDEN_PATH}; update the pinned values in tests/snapshot_golden_test.ts`);
console.log(`recipe: testguest, ${JSON.stringify(GOLDEN_CONFIG)}, Add registered, AddToStatic(41)`);
