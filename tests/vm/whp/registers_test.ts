// Register encoding to and from WHV_REGISTER_VALUE arrays, with the ABI's special registers
// (docs/ABI.md) as the fixture.
import assert from "node:assert/strict";
import { emptySregs, type Segment } from "../../../format/sregs.ts";
import { REGISTER_NAMES, type Registers } from "../../../vm/backend/backend.ts";
import { WHV_REGISTER_NAME as R } from "../../../ffi/windows/winhvplatform.ts";
import {
  decodeRegisters,
  decodeSegment,
  decodeSregs,
  encodeRegisters,
  encodeSegment,
  encodeSregs,
  GP_NAMES,
  segmentAttributes,
  SREG_NAMES,
} from "../../../vm/whp/registers.ts";

const seg = (s: Partial<Segment>): Segment => ({
  base: 0n,
  limit: 0xffffffff,
  selector: 0,
  type: 3,
  present: 1,
  dpl: 3,
  db: 1,
  s: 1,
  l: 0,
  g: 1,
  avl: 0,
  unusable: 0,
  ...s,
});

Deno.test("segment attributes follow the header's bit-fields", () => {
  // User code64: type 11, S, DPL3, P, L, G -> 0xB | 0x10 | 0x60 | 0x80 | 0x2000 | 0x8000
  assert.equal(segmentAttributes(seg({ type: 11, db: 0, l: 1 })), 0xa0fb);
  // User data: type 3, S, DPL3, P, D/B, G
  assert.equal(segmentAttributes(seg({})), 0xc0f3);
  // Busy TSS: type 11, system, DPL0, P
  assert.equal(segmentAttributes(seg({ type: 11, s: 0, dpl: 0, db: 0, g: 0 })), 0x008b);
  // KVM's "unusable" becomes not present; AVL is bit 12.
  assert.equal(segmentAttributes(seg({ unusable: 1, avl: 1 })) & 0x1080, 0x1000);
});

Deno.test("a segment survives encode/decode; not present reads back as unusable", () => {
  const v = new DataView(new ArrayBuffer(16));
  const cs = seg({ base: 0x1234_5678_9abc_def0n, limit: 0xfffff, selector: 0x33, type: 11, db: 0, l: 1 });
  encodeSegment(v, 0, cs);
  assert.deepEqual(decodeSegment(v, 0), cs);
  encodeSegment(v, 0, seg({ present: 0, unusable: 1 }));
  assert.equal(decodeSegment(v, 0).unusable, 1);
});

Deno.test("the ABI special registers round-trip through the 17 WHP values", () => {
  const s = emptySregs();
  s.cs = seg({ selector: 0x33, type: 11, db: 0, l: 1 });
  s.ss = seg({ selector: 0x2b });
  for (const k of ["ds", "es", "fs", "gs"] as const) s[k] = seg({});
  s.fs.base = 0x7000n;
  s.tr = seg({ base: 0x1100n, limit: 0x67 + 33, selector: 0x38, type: 11, s: 0, dpl: 0, db: 0, g: 0 });
  s.ldt = seg({ present: 0, unusable: 1, type: 0, s: 0, dpl: 0, db: 0, g: 0, limit: 0 });
  s.gdt = { base: 0x1000n, limit: 9 * 8 - 1 };
  s.idt = { base: 0x1800n, limit: 32 * 16 - 1 };
  Object.assign(s, {
    cr0: 0x80050033n,
    cr2: 0x1234n,
    cr3: 0x5000n,
    cr4: 0x620n,
    cr8: 0n,
    efer: 0xd00n,
    apicBase: 0xfee00900n,
  });
  const out = new Uint8Array(SREG_NAMES.length * 16);
  encodeSregs(s, out);
  assert.deepEqual(decodeSregs(out), s);
  // Table registers: Limit at 6, Base at 8 of their 16 bytes (GDTR is value 8).
  const v = new DataView(out.buffer);
  assert.equal(v.getUint16(8 * 16 + 6, true), 71);
  assert.equal(v.getBigUint64(8 * 16 + 8, true), 0x1000n);
  assert.deepEqual(SREG_NAMES.slice(0, 10), [
    R.Cs,
    R.Ds,
    R.Es,
    R.Fs,
    R.Gs,
    R.Ss,
    R.Tr,
    R.Ldtr,
    R.Gdtr,
    R.Idtr,
  ]);
});

Deno.test("general registers map to WHP names in REGISTER_NAMES order", () => {
  assert.deepEqual(GP_NAMES.slice(0, 4), [R.Rax, R.Rbx, R.Rcx, R.Rdx], "WHP numbers rbx after rdx");
  assert.equal(GP_NAMES[REGISTER_NAMES.indexOf("rdi")], R.Rdi);
  assert.equal(GP_NAMES[REGISTER_NAMES.indexOf("rip")], R.Rip);
  const r = Object.fromEntries(REGISTER_NAMES.map((n, i) => [n, BigInt(i) << 40n | 7n])) as Registers;
  const out = new Uint8Array(GP_NAMES.length * 16);
  encodeRegisters(r, out);
  assert.deepEqual(decodeRegisters(out), r);
  assert.throws(() => decodeRegisters(new Uint8Array(16)), RangeError);
});
