import assert from "node:assert/strict";
import { emptyRegisters, FXSAVE, type X86Registers } from "../../../vm/debug/registers.ts";
import {
  abridgedTag,
  fullTagWord,
  GDB_REGISTERS,
  GDB_REGNUM,
  readGdbRegister,
  registerSize,
  TARGET_XML,
  writeGdbRegister,
} from "../../../vm/debug/target_description.ts";
import { gdbTest } from "./_guest_memory.ts";

Deno.test("the register list follows gdb's amd64 core + sse + segments features", () => {
  assert.equal(GDB_REGISTERS.length, 59);
  const names = GDB_REGISTERS.map((r) => r.name);
  assert.deepEqual(names.slice(0, 24), [
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "rsp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "eflags",
    "cs",
    "ss",
    "ds",
    "es",
    "fs",
    "gs",
  ]);
  for (const [name, n] of Object.entries(GDB_REGNUM)) assert.equal(names[n], name.toLowerCase(), name);
  // The g packet is every register in order: 16*8 + 8 + 4 + 6*4 + 8*10 + 8*4 + 16*16 + 4 + 2*8 bytes.
  assert.equal(GDB_REGISTERS.reduce((s, _, n) => s + registerSize(n), 0), 552);
  // Every register appears once in the XML, with its regnum.
  GDB_REGISTERS.forEach((r, n) => {
    assert.equal(TARGET_XML.split(`<reg name="${r.name}" `).length, 2, r.name);
    assert.match(
      TARGET_XML,
      new RegExp(`<reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${n}"`),
    );
  });
  assert.match(TARGET_XML, /<architecture>i386:x86-64<\/architecture>/);
});

gdbTest("real gdb accepts the target description with the same register numbers and sizes", () => {
  const file = Deno.makeTempFileSync({ suffix: ".xml" });
  try {
    Deno.writeTextFileSync(file, TARGET_XML);
    const out = new Deno.Command("gdb", {
      args: ["-nx", "-batch", "-ex", `set tdesc filename ${file}`, "-ex", "maint print remote-registers"],
    }).outputSync();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(new TextDecoder().decode(out.stderr), "");
    // " Name  Nr  Rel  Offset  Size  Type  Rmt Nr  g/G Offset": the remote number and g packet offset
    // are what the stub must agree on (gdb's internal numbers differ, e.g. for fs_base).
    const rows = text.split("\n").map((l) => l.trim().split(/\s+/)).filter((c) =>
      c.length === 8 && /^\d+$/.test(c[6])
    );
    let offset = 0;
    GDB_REGISTERS.forEach((r, n) => {
      const row = rows.find((c) => c[0] === r.name);
      assert.ok(row, `gdb lists ${r.name}`);
      assert.equal(Number(row[6]), n, `${r.name} remote number`);
      assert.equal(Number(row[4]), r.bits / 8, `${r.name} size`);
      assert.equal(Number(row[7]), offset, `${r.name} g packet offset`);
      offset += r.bits / 8;
    });
  } finally {
    Deno.removeSync(file);
  }
});

function fxWith(f: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(FXSAVE.SIZE);
  f(new DataView(b.buffer), b);
  return b;
}

/** Writes an 80-bit value (64-bit significand, 16-bit sign+exponent) into ST(i) of an FXSAVE image. */
function setSt(v: DataView, i: number, significand: bigint, exponent: number): void {
  v.setBigUint64(FXSAVE.ST0 + i * 16, significand, true);
  v.setUint16(FXSAVE.ST0 + i * 16 + 8, exponent, true);
}

Deno.test("the full x87 tag word is derived from the abridged tag and the register contents", () => {
  assert.equal(fullTagWord(new Uint8Array(FXSAVE.SIZE)), 0xffff);
  // One value pushed: TOP = 7, ST0 is physical register 7.
  const top7 = (v: DataView) => v.setUint16(FXSAVE.FSW, 7 << 11, true);
  const one = fxWith((v, b) => {
    top7(v);
    b[FXSAVE.FTW] = 0x80;
    setSt(v, 0, 0x8000_0000_0000_0000n, 0x3fff); // 1.0
  });
  assert.equal(fullTagWord(one).toString(16), "3fff"); // physical 7 valid, the rest empty
  const zero = fxWith((v, b) => {
    top7(v);
    b[FXSAVE.FTW] = 0x80;
  });
  assert.equal(fullTagWord(zero).toString(16), "7fff");
  const nan = fxWith((v, b) => {
    top7(v);
    b[FXSAVE.FTW] = 0x80;
    setSt(v, 0, 0xc000_0000_0000_0000n, 0x7fff);
  });
  assert.equal(fullTagWord(nan).toString(16), "bfff");
  const denormal = fxWith((v, b) => {
    b[FXSAVE.FTW] = 0x01; // TOP 0: ST0 is physical 0
    setSt(v, 0, 1n, 0);
  });
  assert.equal(fullTagWord(denormal).toString(16), "fffe");
  const unnormal = fxWith((v, b) => {
    b[FXSAVE.FTW] = 0x01;
    setSt(v, 0, 1n, 0x3fff); // integer bit clear with a nonzero exponent
  });
  assert.equal(fullTagWord(unnormal).toString(16), "fffe");
  assert.equal(abridgedTag(0x3fff), 0x80);
  assert.equal(abridgedTag(0xffff), 0);
  assert.equal(abridgedTag(0x0000), 0xff);
});

function regsWithFx(): X86Registers {
  const fx = fxWith((v) => {
    v.setUint16(FXSAVE.FCW, 0x37f, true);
    v.setUint16(FXSAVE.FOP, 0xf800 | 0x123, true);
    v.setBigUint64(FXSAVE.FIP, 0x1111_2222_3333_4444n, true);
    v.setBigUint64(FXSAVE.FDP, 0x5555_6666_7777_8888n, true);
    v.setUint32(FXSAVE.MXCSR, 0x1f80, true);
  });
  return { ...emptyRegisters(), cs: 0x33n, ss: 0x2bn, rflags: 0x202n, fxsave: fx };
}

Deno.test("x87 control registers read as gdb reads 64-bit FXSAVE data", () => {
  const regs = regsWithFx();
  const u32 = (n: number) => new DataView(readGdbRegister(regs, n)!.buffer).getUint32(0, true);
  const at = (name: string) => GDB_REGISTERS.findIndex((r) => r.name === name);
  assert.equal(u32(at("fctrl")), 0x37f);
  assert.equal(u32(at("fop")), 0x123); // 11 bits
  assert.equal(u32(at("fioff")), 0x3333_4444);
  assert.equal(u32(at("fiseg")), 0x1111_2222); // upper half of the 64-bit pointer
  assert.equal(u32(at("fooff")), 0x7777_8888);
  assert.equal(u32(at("foseg")), 0x5555_6666);
  assert.equal(u32(at("ftag")), 0xffff);
  assert.equal(u32(GDB_REGNUM.MXCSR), 0x1f80);
  assert.equal(u32(GDB_REGNUM.EFLAGS), 0x202);
  assert.equal(u32(GDB_REGNUM.CS), 0x33);
  // Without an FXSAVE image the x87/SSE registers are unavailable, the others are not.
  const bare = emptyRegisters();
  for (let n = GDB_REGNUM.ST0; n <= GDB_REGNUM.MXCSR; n++) assert.equal(readGdbRegister(bare, n), undefined);
  assert.ok(readGdbRegister(bare, GDB_REGNUM.FS_BASE));
  assert.throws(() => readGdbRegister(bare, 59), RangeError);
});

Deno.test("every register round-trips through write and read", () => {
  const regs = regsWithFx();
  GDB_REGISTERS.forEach((r, n) => {
    if (n >= GDB_REGNUM.CS && n < GDB_REGNUM.ST0) return; // selectors: see below
    const value = Uint8Array.from({ length: r.bits / 8 }, (_, i) => (n * 7 + i * 13) & 0xff);
    if (r.name === "ftag") value.set([0xff, 0x3f, 0, 0]); // a tag word the abridged byte can express
    if (r.name === "fop") value.set([0x23, 0x01, 0, 0]); // 11 bits
    if (r.name === "eflags") value.set([0xd7, 0x0f, 0x25, 0]); // debugger-writable bits + 0x202 kept
    if (["fctrl", "fstat"].includes(r.name)) value.set([0x12, 0x34, 0, 0]); // 16 bits in FXSAVE
    const before = regs.fxsave;
    assert.ok(writeGdbRegister(regs, n, value), r.name);
    if (n >= GDB_REGNUM.ST0 && n <= GDB_REGNUM.MXCSR) {
      assert.notEqual(regs.fxsave, before, "fxsave is copied");
    }
    if (r.name === "ftag") {
      // The tag of physical 7 reads back from what ST0 now holds (written above as st0).
      assert.equal(regs.fxsave![FXSAVE.FTW], 0x80);
      return;
    }
    assert.deepEqual(readGdbRegister(regs, n), value, r.name);
  });
  assert.throws(() => writeGdbRegister(regs, GDB_REGNUM.RIP, new Uint8Array(4)), RangeError);
});

Deno.test("the debugger cannot change selectors or privileged flags", () => {
  const regs = regsWithFx();
  assert.equal(writeGdbRegister(regs, GDB_REGNUM.CS, new Uint8Array([0x08, 0, 0, 0])), false); // kernel code
  assert.equal(regs.cs, 0x33n);
  assert.equal(writeGdbRegister(regs, GDB_REGNUM.CS, new Uint8Array([0x33, 0, 0, 0])), true); // unchanged: fine
  // IOPL=3, IF, NT, VM requested: only CF, TF and DF stick; bit 1 and IF (host-owned) keep their values.
  const wanted = 0x3000 | 0x200 | 0x4000 | 0x20000 | 0x1 | 0x100 | 0x400;
  writeGdbRegister(regs, GDB_REGNUM.EFLAGS, new Uint8Array(new Uint32Array([wanted]).buffer));
  assert.equal(regs.rflags, 0x202n | 0x1n | 0x100n | 0x400n);
  writeGdbRegister(regs, GDB_REGNUM.EFLAGS, new Uint8Array(4));
  assert.equal(regs.rflags, 0x202n);
  const bare = emptyRegisters();
  assert.equal(writeGdbRegister(bare, GDB_REGNUM.XMM0, new Uint8Array(16)), false);
  assert.equal(bare.fxsave, undefined);
});
