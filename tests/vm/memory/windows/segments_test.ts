import assert from "node:assert/strict";
import { applyReplace, clip, initialSegments, planReplace } from "../../../../vm/memory/windows/_segments.ts";

Deno.test("replacing the persistent prefix keeps the guard and scratch bytes unless pre-split", () => {
  const whole = initialSegments(5 * 4096);
  assert.deepEqual(planReplace(whole, 0, 2 * 4096).keep, [{ offset: 8192, size: 12288 }]);
  const split = initialSegments(5 * 4096, [2 * 4096, 3 * 4096]);
  assert.deepEqual(planReplace(split, 0, 2 * 4096).keep, [], "split where the view goes: nothing to copy");
  const next = applyReplace(split, 0, 2 * 4096, "view");
  assert.deepEqual(next.map((s) => [s.offset, s.kind]), [[0, "view"], [8192, "private"], [12288, "private"]]);
  const again = applyReplace(next, 0, 2 * 4096, "view");
  assert.deepEqual(again, next, "re-mapping a snapshot over a view");
  assert.deepEqual(clip(next, 4096, 8192).map((p) => [p.offset, p.size]), [[4096, 4096], [8192, 4096]]);
  assert.throws(() => planReplace(split, 4 * 4096, 2 * 4096), RangeError);
});
