import assert from "node:assert/strict";
import { wasmBlake3 } from "../../../format/blake3/_wasm.ts";
import {
  b3sum,
  BOUNDARY_LENGTHS,
  hex,
  OFFICIAL_VECTORS,
  pattern,
  pseudoRandom,
  toolTest,
} from "./_helpers.ts";

Deno.test("WASM gives the official digests", () => {
  for (const [length, expected] of OFFICIAL_VECTORS) assert.equal(hex(wasmBlake3(pattern(length))), expected);
});

toolTest("WASM agrees with b3sum at tree boundaries", ["b3sum"], async () => {
  for (const length of BOUNDARY_LENGTHS) {
    const data = pseudoRandom(length, length + 5);
    assert.equal(hex(wasmBlake3(data)), await b3sum(data), `${length} bytes`);
  }
});

Deno.test("WASM hashes views from their offset", () => {
  const backing = pattern(10_000);
  assert.equal(hex(wasmBlake3(backing.subarray(3, 9_000))), hex(wasmBlake3(backing.slice(3, 9_000))));
  assert.equal(hex(wasmBlake3(backing.subarray(4000, 4000))), OFFICIAL_VECTORS[0][1]);
});
