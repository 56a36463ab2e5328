import assert from "node:assert/strict";
import {
  buildCoreDump,
  type CoreDumpDescription,
  coreDumpOfTarget,
  MAX_CORE_SEGMENTS,
  writeCoreDump,
} from "../../../vm/debug/core_dump.ts";
import { CoreDumpError } from "../../../vm/debug/errors.ts";
import { emptyRegisters } from "../../../vm/debug/registers.ts";
import { GUEST_CFLAGS } from "../../../guest/build.ts";
import { parseElf } from "../../../vm/machine/elf.ts";
import { INFO_ADDR } from "../../../vm/machine/abi.ts";
import { gdbTest, symbol, TestGuest, TESTGUEST_PATH, TESTGUEST_SEGMENTS, toolTest } from "./_guest_memory.ts";

const WILD_WRITE = symbol("wild_write");
/** A return address inside handle_call, for a plausible stack (gdb names the caller from it). */
const AFTER_CALL_IN_HANDLE_CALL = BigInt(symbol("handle_call") + 0x10);

/** testguest stopped on the faulting store in wild_write, called from handle_call. */
function crashedGuest(): TestGuest {
  const g = new TestGuest();
  const rsp = g.layout.stackTop - 0x100;
  new DataView(g.bytes.buffer).setBigUint64(rsp, AFTER_CALL_IN_HANDLE_CALL, true);
  g.registers = {
    ...g.registers,
    rip: BigInt(WILD_WRITE + 4),
    rsp: BigInt(rsp),
    rax: 0x10n,
    rdi: BigInt(g.layout.inputBase),
    r15: 0xf15n,
    fsBase: 0xfb5n,
  };
  return g;
}

function describe(g: TestGuest, extra: Partial<CoreDumpDescription> = {}): CoreDumpDescription {
  return {
    ...coreDumpOfTarget(g, {
      entry: BigInt(g.elf.entry),
      programName: "testguest",
      binaryPath: TESTGUEST_PATH,
      binarySegments: g.elf.segments,
      signal: "SIGSEGV",
      faultAddress: 0x10n,
    }),
    ...extra,
  };
}

interface Note {
  type: number;
  name: string;
  desc: DataView;
}

function parse(core: Uint8Array) {
  const v = new DataView(core.buffer, core.byteOffset, core.byteLength);
  const phnum = v.getUint16(56, true);
  const phdrs = Array.from({ length: phnum }, (_, i) => {
    const o = Number(v.getBigUint64(32, true)) + i * 56;
    return {
      type: v.getUint32(o, true),
      flags: v.getUint32(o + 4, true),
      offset: Number(v.getBigUint64(o + 8, true)),
      vaddr: v.getBigUint64(o + 16, true),
      filesz: Number(v.getBigUint64(o + 32, true)),
      memsz: Number(v.getBigUint64(o + 40, true)),
      align: Number(v.getBigUint64(o + 48, true)),
    };
  });
  const notes: Note[] = [];
  const n = phdrs[0];
  for (let o = n.offset; o < n.offset + n.filesz;) {
    const namesz = v.getUint32(o, true), descsz = v.getUint32(o + 4, true), type = v.getUint32(o + 8, true);
    const name = new TextDecoder().decode(core.subarray(o + 12, o + 12 + namesz - 1));
    const descAt = o + 12 + ((namesz + 3) & ~3);
    notes.push({ type, name, desc: new DataView(core.buffer, core.byteOffset + descAt, descsz) });
    o = descAt + ((descsz + 3) & ~3);
  }
  return { v, phdrs, notes };
}

Deno.test("the core has Linux's x86-64 layout: header, notes, and one PT_LOAD per user range", () => {
  const g = crashedGuest();
  const core = buildCoreDump(describe(g));
  const { v, phdrs, notes } = parse(core);
  assert.deepEqual([...core.subarray(0, 7)], [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  assert.equal(v.getUint16(16, true), 4); // ET_CORE
  assert.equal(v.getUint16(18, true), 62); // EM_X86_64
  assert.equal(phdrs[0].type, 4); // PT_NOTE first
  // The user-visible ranges of testguest: the info page with the text (RX), rodata (R), .bss + heap (RW),
  // stack + buffers (RW).
  const loads = phdrs.slice(1);
  const { rodata, data } = TESTGUEST_SEGMENTS;
  assert.deepEqual(
    loads.map((p) => [p.type, p.vaddr, p.memsz, p.flags]),
    [
      [1, BigInt(INFO_ADDR), rodata - INFO_ADDR, 5],
      [1, BigInt(rodata), data - rodata, 4],
      [1, BigInt(data), g.layout.persistentEnd - data, 6],
      [1, BigInt(g.layout.scratchBase), g.layout.end - g.layout.scratchBase, 6],
    ],
  );
  for (const p of loads) {
    assert.equal(p.offset % 4096, 0);
    assert.equal(p.filesz, p.memsz);
    const va = Number(p.vaddr);
    assert.deepEqual(core.subarray(p.offset, p.offset + p.filesz), g.bytes.subarray(va, va + p.memsz));
  }
  assert.equal(core.length, loads.at(-1)!.offset + loads.at(-1)!.filesz);

  assert.deepEqual(notes.map((n) => [n.name, n.type]), [
    ["CORE", 1], // NT_PRSTATUS
    ["CORE", 3], // NT_PRPSINFO
    ["CORE", 0x53494749], // NT_SIGINFO
    ["CORE", 6], // NT_AUXV
    ["CORE", 0x46494c45], // NT_FILE
    ["CORE", 2], // NT_PRFPREG
  ]);
  const [prstatus, prpsinfo, siginfo, auxv, file, fpregs] = notes.map((n) => n.desc);
  assert.equal(prstatus.byteLength, 336);
  assert.equal(prstatus.getInt32(0, true), 11); // si_signo
  assert.equal(prstatus.getInt16(12, true), 11); // pr_cursig
  assert.equal(prstatus.getInt32(32, true), 1); // pr_pid
  const reg = (i: number) => prstatus.getBigUint64(112 + i * 8, true);
  assert.equal(reg(0), 0xf15n); // r15 first
  assert.equal(reg(10), 0x10n); // rax
  assert.equal(reg(15), 0xffff_ffff_ffff_ffffn); // orig_rax
  assert.equal(reg(16), BigInt(WILD_WRITE + 4)); // rip
  assert.equal(reg(17), 0x33n); // cs
  assert.equal(reg(19), g.registers.rsp);
  assert.equal(reg(20), 0x2bn); // ss
  assert.equal(reg(21), 0xfb5n); // fs_base
  assert.equal(prstatus.getInt32(328, true), 1); // pr_fpvalid
  assert.equal(prpsinfo.byteLength, 136);
  assert.equal(
    new TextDecoder().decode(new Uint8Array(prpsinfo.buffer, prpsinfo.byteOffset + 40, 9)),
    "testguest",
  );
  assert.equal(siginfo.byteLength, 128);
  assert.equal(siginfo.getBigUint64(16, true), 0x10n); // si_addr
  assert.deepEqual(
    Array.from({ length: auxv.byteLength / 8 }, (_, i) => auxv.getBigUint64(i * 8, true)),
    [6n, 4096n, 9n, 0x200000n, 0n, 0n],
  );
  // NT_FILE: the two file-backed segments of testguest (.bss has no file bytes).
  assert.equal(file.getBigUint64(0, true), 2n);
  assert.deepEqual([file.getBigUint64(16, true), file.getBigUint64(24, true), file.getBigUint64(32, true)], [
    0x200000n,
    BigInt(TESTGUEST_SEGMENTS.rodata),
    1n,
  ]);
  assert.equal(fpregs.byteLength, 512);
  assert.deepEqual(new Uint8Array(fpregs.buffer, fpregs.byteOffset, 512), g.registers.fxsave);
});

Deno.test("optional parts: no signal, no binary, no FXSAVE image", () => {
  const g = crashedGuest();
  g.registers.fxsave = undefined;
  const core = buildCoreDump({ ...describe(g), signal: undefined, binaryPath: undefined });
  const { notes } = parse(core);
  assert.deepEqual(notes.map((n) => n.type), [1, 3, 6]);
  assert.equal(notes[0].desc.getInt16(12, true), 0);
  assert.equal(notes[0].desc.getInt32(328, true), 0);
});

Deno.test("memory the reader cannot read is recorded as zeros", () => {
  const core = buildCoreDump({
    registers: emptyRegisters(),
    ranges: [{ start: 0x1000n, size: 0x2000, writable: true, executable: false }],
    readMemory: (_a, into) => (into.fill(0xaa, 0, 100), 100),
    entry: 0x1000n,
    programName: "x".repeat(100),
  });
  const { phdrs } = parse(core);
  const data = core.subarray(phdrs[1].offset, phdrs[1].offset + 0x2000);
  assert.ok(data.subarray(0, 100).every((b) => b === 0xaa));
  assert.ok(data.subarray(100).every((b) => b === 0));
});

Deno.test("invalid descriptions are CoreDumpErrors naming the problem", () => {
  const base: CoreDumpDescription = {
    registers: emptyRegisters(),
    ranges: [],
    readMemory: () => 0,
    entry: 0n,
    programName: "p",
  };
  const r = (start: bigint, size: number) => ({ start, size, writable: false, executable: false });
  const expect = (d: Partial<CoreDumpDescription>, message: RegExp) =>
    assert.throws(() => buildCoreDump({ ...base, ...d }), (e: unknown) => {
      assert.ok(e instanceof CoreDumpError);
      assert.equal(e.name, "CoreDumpError");
      assert.match(e.message, /^Cannot write core dump: /);
      assert.match(e.message, message);
      return true;
    });
  expect({ ranges: [r(0x1000n, 0x1000), r(0x1000n, 0x1000)] }, /range 1 overlaps/);
  expect({ ranges: [r(0x2000n, 0x1000), r(0x1000n, 0x1000)] }, /range 1 overlaps or precedes/);
  expect({ ranges: [r(0x1001n, 0x1000)] }, /range 0 starts at 0x1001/);
  expect({ ranges: [r(0xffff_ffff_ffff_f000n, 0x2000)] }, /not a page in the 64-bit space/);
  expect({ ranges: [r(0x1000n, 100)] }, /range 0 has size 100/);
  expect({ ranges: [r(0x1000n, 0)] }, /range 0 has size 0/);
  expect(
    { ranges: Array.from({ length: MAX_CORE_SEGMENTS + 1 }, (_, i) => r(BigInt(i) * 0x1000n, 0x1000)) },
    /65535 memory ranges/,
  );
  expect({ ranges: [r(0n, 8 * 0x4000_0000)] }, /more than the limit/);
  expect({ pid: 0 }, /pid 0/);
  expect({ entry: -1n }, /entry/);
  expect({ registers: { ...emptyRegisters(), fxsave: new Uint8Array(10) } }, /FXSAVE image has 10 bytes/);
  expect({ ranges: [r(0x1000n, 0x1000)], readMemory: () => 5000 }, /readMemory returned 5000/);
  expect({ ranges: [r(0x1000n, 0x1000)], readMemory: () => NaN }, /readMemory returned NaN/);
});

Deno.test("writeCoreDump writes the same bytes as buildCoreDump, and file errors are CoreDumpErrors", () => {
  const g = crashedGuest();
  const path = Deno.makeTempFileSync({ suffix: ".core" });
  try {
    Deno.writeFileSync(path, new Uint8Array(1 << 20).fill(1)); // an older, bigger file is replaced
    const size = writeCoreDump(path, describe(g));
    const written = Deno.readFileSync(path);
    assert.equal(written.length, size);
    assert.deepEqual(written, buildCoreDump(describe(g)));
  } finally {
    Deno.removeSync(path);
  }
  assert.throws(() => writeCoreDump("/nonexistent-dir/core", describe(g)), (e: unknown) => {
    assert.ok(e instanceof CoreDumpError);
    assert.match(e.message, /cannot create \/nonexistent-dir\/core/);
    assert.ok(e.cause instanceof Deno.errors.NotFound);
    return true;
  });
});

gdbTest(
  "gdb opens the core with the guest binary: signal, backtrace, registers, memory, siginfo, SSE",
  () => {
    const g = crashedGuest();
    const path = Deno.makeTempFileSync({ suffix: ".core" });
    try {
      writeCoreDump(path, describe(g));
      const out = new Deno.Command("gdb", {
        args: [
          "-nx",
          "-batch",
          "-ex",
          "bt",
          "-ex",
          "info registers rip rax",
          "-ex",
          "x/4xb 0x200000",
          "-ex",
          "p $_siginfo._sifields._sigfault.si_addr",
          "-ex",
          "p $xmm0.v16_int8",
          "-ex",
          "p $fs_base",
          TESTGUEST_PATH,
          path,
        ],
      }).outputSync();
      const text = new TextDecoder().decode(out.stdout);
      const first = [...g.bytes.subarray(0x200000, 0x200004)].map((b) =>
        `0x${b.toString(16).padStart(2, "0")}`
      );
      assert.match(text, new RegExp(`Core was generated by \`${TESTGUEST_PATH}'`));
      assert.match(text, /Program terminated with signal SIGSEGV, Segmentation fault\./);
      assert.match(text, new RegExp(`#0 +0x${hex16(WILD_WRITE + 4)} in wild_write \\(\\)`));
      assert.match(
        text,
        new RegExp(`#1 +0x${hex16(Number(AFTER_CALL_IN_HANDLE_CALL))} in handle_call \\(\\)`),
      );
      assert.match(
        text,
        new RegExp(
          `rip\\s+0x${(WILD_WRITE + 4).toString(16)}\\s+0x${(WILD_WRITE + 4).toString(16)} <wild_write\\+4>`,
        ),
      );
      assert.match(text, /rax\s+0x10\s+16/);
      assert.ok(text.includes(`0x200000 <_start>:\t${first.join("\t")}`), text);
      assert.match(text, /= \(void \*\) 0x10/);
      assert.match(text, /\{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16\}/);
      assert.match(text, /= 4021/); // fs_base 0xfb5
    } finally {
      Deno.removeSync(path);
    }
  },
);

toolTest("a -g build of the guest loads the same bytes, so gdb shows source lines for a -g0 guest's core", [
  "gcc",
  "gdb",
], async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const guestDir = new URL("../../../guest/", import.meta.url).pathname;
    const sources = ["runtime", "testguest"].flatMap((d) =>
      [...Deno.readDirSync(`${guestDir}${d}`)].map((e) => `${d}/${e.name}`).filter((f) => /\.(c|S)$/.test(f))
        .sort()
    );
    const build = async (debug: boolean) => {
      const out = `${dir}/testguest${debug ? "-g" : ""}`;
      const flags = GUEST_CFLAGS.map((f) => (f === "-g0" && debug ? "-g" : f));
      const r = await new Deno.Command("gcc", {
        args: [...flags, ...sources, "-lgcc", "-o", out],
        cwd: guestDir,
      })
        .output();
      assert.ok(r.success, new TextDecoder().decode(r.stderr));
      return out;
    };
    const [plain, withDebug] = await Promise.all([build(false), build(true)]);
    const a = Deno.readFileSync(plain), b = Deno.readFileSync(withDebug);
    const loaded = (file: Uint8Array) =>
      parseElf(file).segments.map((
        s,
      ) => [s.vaddr, s.memSize, ...file.subarray(s.fileOffset, s.fileOffset + s.fileSize)]);
    assert.deepEqual(loaded(b), loaded(a), "the debug build loads exactly the same bytes");

    const g = new TestGuest(a);
    const rsp = g.layout.stackTop - 0x100;
    const handleCall = symbol("handle_call", plain);
    new DataView(g.bytes.buffer).setBigUint64(rsp, BigInt(handleCall + 0x10), true);
    g.registers = { ...g.registers, rip: BigInt(symbol("wild_write", plain) + 4), rsp: BigInt(rsp) };
    const core = `${dir}/core`;
    writeCoreDump(core, {
      ...coreDumpOfTarget(g, { entry: BigInt(g.elf.entry), programName: "testguest", signal: "SIGSEGV" }),
    });
    const out = new Deno.Command("gdb", { args: ["-nx", "-batch", "-ex", "bt 1", withDebug, core] })
      .outputSync();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /#0 +0x[0-9a-f]+ in wild_write \(a=.*\) at testguest\/testguest\.c:\d+/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** An address as gdb prints it in frames: 16 hex digits. */
function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}
