import assert from "node:assert/strict";
import {
  emptyRegisters,
  FXSAVE,
  RFLAGS_TF,
  RFLAGS_USER_MASK,
  X86_REGISTER_NAMES,
} from "../../../vm/debug/registers.ts";

Deno.test("an empty register set has every register, RFLAGS bit 1, and no FXSAVE image", () => {
  const r = emptyRegisters();
  assert.equal(X86_REGISTER_NAMES.length, 26);
  for (const n of X86_REGISTER_NAMES) assert.equal(r[n], n === "rflags" ? 2n : 0n, n);
  assert.equal(r.fxsave, undefined);
  assert.equal(Object.keys(r).length, 26);
});

Deno.test("RFLAGS bits the debugger may change exclude the host's", () => {
  const bit = (n: number) => 1n << BigInt(n);
  for (const n of [0, 2, 4, 6, 7, 8, 10, 11, 16, 18, 21]) assert.ok(RFLAGS_USER_MASK & bit(n), `bit ${n}`);
  for (const n of [1, 9, 12, 13, 14, 17, 19, 20]) assert.equal(RFLAGS_USER_MASK & bit(n), 0n, `bit ${n}`);
  assert.equal(RFLAGS_TF, bit(8));
  assert.deepEqual([FXSAVE.SIZE, FXSAVE.MXCSR, FXSAVE.ST0, FXSAVE.XMM0], [512, 24, 32, 160]);
});
