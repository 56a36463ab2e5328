/**
 * CI run of the snapshot fuzzer (see snapshot_fuzz.ts): a fixed budget of cases with a fixed seed, and a replay of
 * every input in tests/fuzz/corpus/snapshot/. Both run in a child process (tests/fuzz/main.ts), so a crash or
 * hang of the Deno process is reported as a failure of this test instead of ending the test run.
 *
 * @module
 */
import assert from "node:assert/strict";
import { vmTest } from "../_hypervisor.ts";
import { formatFailures, supervise } from "./main.ts";
import { CORPUS_DIR } from "./_harness.ts";

/** Cases per CI run: structural list (2,993 cases) + random cases. */
export const CI_BUDGET = 3500;
/** Seed of the CI run. */
export const CI_SEED = 20261126;

vmTest(`snapshot fuzzer: CI budget of ${CI_BUDGET} cases without a disallowed outcome`, async () => {
  const r = await supervise("snapshot", { seed: CI_SEED, iterations: CI_BUDGET, stallSeconds: 120 });
  assert.equal(r.crashes, 0, `the fuzzed process crashed or hung:\n${formatFailures(r)}`);
  assert.equal(r.cases, CI_BUDGET);
  assert.equal(r.failures.length, 0, `${r.failures.length} failing cases:\n${formatFailures(r)}`);
});

vmTest("snapshot fuzzer: every corpus input passes", async () => {
  const r = await supervise("snapshot", { seed: CI_SEED, replayDir: CORPUS_DIR, stallSeconds: 120 });
  assert.equal(r.failures.length, 0, `${r.failures.length} corpus inputs fail:\n${formatFailures(r)}`);
});
