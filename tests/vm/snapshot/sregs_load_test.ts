import assert from "node:assert/strict";
import { decodeSregs, emptySregs, encodeSregs, sregsToKvm } from "../../../format/mod.ts";
import { kvmSregsFromFile } from "../../../vm/snapshot/checks.ts";

Deno.test("the loader's fast sregs conversion equals the codec's", () => {
  const s = emptySregs();
  const names = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
  names.forEach((n, i) => {
    Object.assign(s[n], {
      base: 0x1122334455667788n + BigInt(i),
      limit: 0xfffff000 + i,
      selector: 0x33 + i,
      type: 11,
      present: 1,
      dpl: 3,
      db: i & 1,
      s: 1,
      l: (i >> 1) & 1,
      g: 1,
      avl: 1,
      unusable: i === 7 ? 1 : 0,
    });
  });
  s.gdt = { base: 0x1000n, limit: 71 };
  s.idt = { base: 0x1800n, limit: 511 };
  s.cr0 = 0x80050033n;
  s.cr2 = 0xdeadbeef000n;
  s.cr3 = 0x5000n;
  s.cr4 = 0x620n;
  s.cr8 = 15n;
  s.efer = 0xd01n;
  s.apicBase = 0xfee00900n;
  s.interruptBitmap = [1n, 2n, 1n << 63n, 0n];
  const file = encodeSregs(decodeSregs(encodeSregs(s)));
  assert.deepEqual(kvmSregsFromFile(file), sregsToKvm(s));
});
