import assert from "node:assert/strict";
import { emptySregs, SEGMENT_NAMES, type Sregs } from "../../../format/mod.ts";
import { sregsFromKvm, sregsToKvm } from "../../../vm/kvm/sregs.ts";

const KVM_SREGS_SIZE = 312;

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

Deno.test("kvm_sregs conversion round-trips and zeroes padding in a reused buffer", () => {
  const sregs = distinctSregs();
  const target = new Uint8Array(KVM_SREGS_SIZE + 8).fill(0xaa);
  const bytes = sregsToKvm(sregs, target);
  assert.equal(bytes, target);
  assert.deepEqual(sregsFromKvm(bytes), sregs);
  // kvm_segment.padding (byte 23 of each 24-byte segment) and the 6 bytes after each dtable limit.
  for (let i = 0; i < 8; i++) assert.equal(bytes[i * 24 + 23], 0);
  assert.deepEqual([...bytes.subarray(202, 208)], [0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...bytes.subarray(218, 224)], [0, 0, 0, 0, 0, 0]);
  assert.equal(bytes[KVM_SREGS_SIZE], 0xaa, "must not write past the structure");
  assert.throws(() => sregsToKvm(sregs, new Uint8Array(311)), RangeError);
  assert.throws(() => sregsFromKvm(new Uint8Array(311)), RangeError);
  const tooWide = distinctSregs();
  tooWide.cs.selector = 0x10000;
  assert.throws(() => sregsToKvm(tooWide), RangeError);
});

Deno.test("kvm_sregs offsets match the spec table", () => {
  const sregs = distinctSregs();
  const bytes = sregsToKvm(sregs);
  const view = new DataView(bytes.buffer);
  const ss = 5 * 24;
  assert.equal(view.getBigUint64(ss, true), sregs.ss.base);
  assert.equal(view.getUint32(ss + 8, true), sregs.ss.limit);
  assert.equal(view.getUint16(ss + 12, true), sregs.ss.selector);
  assert.deepEqual(
    [...bytes.subarray(ss + 14, ss + 23)],
    [sregs.ss.type, 1, sregs.ss.dpl, sregs.ss.db, sregs.ss.s, sregs.ss.l, 1, 1, 0],
  );
  assert.equal(view.getBigUint64(192, true), sregs.gdt.base);
  assert.equal(view.getUint16(200, true), sregs.gdt.limit);
  assert.equal(view.getBigUint64(208, true), sregs.idt.base);
  assert.equal(view.getUint16(216, true), sregs.idt.limit);
  const registers = [sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.cr8, sregs.efer, sregs.apicBase];
  registers.forEach((value, i) => assert.equal(view.getBigUint64(224 + 8 * i, true), value));
  sregs.interruptBitmap.forEach((word, i) => assert.equal(view.getBigUint64(280 + 8 * i, true), word));
});

// The kernel header is the real authority on struct kvm_sregs: a C program fills one with the same distinct
// values through the field names and prints its bytes.
const C_PROGRAM = `
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  struct kvm_sregs s;
  struct kvm_segment *segs[8] = {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt};
  memset(&s, 0, sizeof s);
  for (int i = 0; i < 8; i++) {
    segs[i]->base = 0x1111000000000000ull + (unsigned long long)i * 0x100000001ull;
    segs[i]->limit = 0x10000u * (i + 1) + 0xfff;
    segs[i]->selector = 0x100 + i * 8;
    segs[i]->type = i + 3; segs[i]->present = 1; segs[i]->dpl = i % 4; segs[i]->db = i % 2;
    segs[i]->s = (i + 1) % 2; segs[i]->l = i == 0; segs[i]->g = 1; segs[i]->avl = i == 5;
    segs[i]->unusable = i == 7;
  }
  s.gdt.base = 0x2222000000001000ull; s.gdt.limit = 0x1234;
  s.idt.base = 0x3333000000001800ull; s.idt.limit = 0xfedc;
  s.cr0 = 0x80050033; s.cr2 = 0x44440000deadbeefull; s.cr3 = 0x5000; s.cr4 = 0x620; s.cr8 = 0xf;
  s.efer = 0xd01; s.apic_base = 0xfee00900;
  s.interrupt_bitmap[0] = 1; s.interrupt_bitmap[1] = 0x8000000000000000ull;
  s.interrupt_bitmap[2] = 0x5555555555555555ull; s.interrupt_bitmap[3] = 0xfffffffffffffffeull;
  if (sizeof s != 312) return 2;
  fwrite(&s, sizeof s, 1, stdout);
  return 0;
}
`;

async function kernelBytes(): Promise<Uint8Array | null> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return null;
  const dir = await Deno.makeTempDir({ prefix: "snapvm-sregs-" });
  try {
    await Deno.writeTextFile(`${dir}/sregs.c`, C_PROGRAM);
    const compile = await new Deno.Command("gcc", {
      args: ["-o", `${dir}/sregs`, `${dir}/sregs.c`],
      stderr: "piped",
    })
      .output();
    if (!compile.success) return null;
    const run = await new Deno.Command(`${dir}/sregs`, { stdout: "piped" }).output();
    assert.ok(run.success, "the C program found sizeof(struct kvm_sregs) != 312");
    return run.stdout;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("kvm_sregs conversion agrees with <linux/kvm.h>", async (t) => {
  const bytes = await kernelBytes();
  if (bytes === null) {
    console.log("gcc or <linux/kvm.h> missing: layout checked against the spec table only");
    return;
  }
  assert.equal(bytes.length, KVM_SREGS_SIZE);
  await t.step(
    "sregsFromKvm reads the kernel's bytes",
    () => assert.deepEqual(sregsFromKvm(bytes), distinctSregs()),
  );
  await t.step(
    "sregsToKvm writes the kernel's bytes",
    () => assert.deepEqual(sregsToKvm(distinctSregs()), bytes),
  );
});
