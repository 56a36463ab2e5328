import assert from "node:assert/strict";
import {
  decodeSregs,
  emptySregs,
  encodeSregs,
  SEGMENT_NAMES,
  type Sregs,
  SREGS_SIZE,
} from "../../format/mod.ts";

/** Distinct values in every field, so a swapped or misplaced field cannot go unnoticed. */
function distinctSregs(): Sregs {
  const sregs = emptySregs();
  SEGMENT_NAMES.forEach((name, i) => {
    sregs[name] = {
      base: 0x1111_0000_0000_0000n + BigInt(i) * 0x1_0000_0001n,
      limit: 0x10000 * (i + 1) + 0xfff,
      selector: 0x100 + i * 8,
      type: i + 3,
      present: 1,
      dpl: i % 4,
      db: i % 2,
      s: (i + 1) % 2,
      l: i === 0 ? 1 : 0,
      g: 1,
      avl: i === 5 ? 1 : 0,
      unusable: i === 7 ? 1 : 0,
    };
  });
  sregs.gdt = { base: 0x2222_0000_0000_1000n, limit: 0x1234 };
  sregs.idt = { base: 0x3333_0000_0000_1800n, limit: 0xfedc };
  sregs.cr0 = 0x80050033n;
  sregs.cr2 = 0x4444_0000_dead_beefn;
  sregs.cr3 = 0x5000n;
  sregs.cr4 = 0x620n;
  sregs.cr8 = 0xfn;
  sregs.efer = 0xd01n;
  sregs.apicBase = 0xfee00900n;
  sregs.interruptBitmap = [1n, 0x8000_0000_0000_0000n, 0x5555_5555_5555_5555n, 0xffff_ffff_ffff_fffen];
  return sregs;
}

Deno.test("the file form of sregs round-trips and is 952 bytes", () => {
  const sregs = distinctSregs();
  const bytes = encodeSregs(sregs);
  assert.equal(bytes.length, SREGS_SIZE);
  assert.deepEqual(decodeSregs(bytes), sregs);
  assert.deepEqual(encodeSregs(null), new Uint8Array(SREGS_SIZE));
  assert.deepEqual(decodeSregs(encodeSregs(null)), emptySregs());
});

Deno.test("decodeSregs accepts every value at the edge of its range", () => {
  const sregs = emptySregs();
  for (const name of SEGMENT_NAMES) {
    sregs[name] = {
      base: 0xffff_ffff_ffff_ffffn,
      limit: 0xffffffff,
      selector: 0xffff,
      type: 15,
      present: 1,
      dpl: 3,
      db: 1,
      s: 1,
      l: 1,
      g: 1,
      avl: 1,
      unusable: 1,
    };
  }
  sregs.gdt.limit = 0xffff;
  sregs.idt.limit = 0xffff;
  sregs.cr8 = 15n;
  sregs.efer = 0xffff_ffff_ffff_ffffn;
  assert.deepEqual(decodeSregs(encodeSregs(sregs)), sregs);
});
