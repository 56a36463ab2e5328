/**
 * Test scaffolding for the debugger: the real `testguest` binary laid out in plain memory the way
 * docs/ABI.md describes (system area, page tables at 0x5000, info page, image at 0x200000, heap, an unbacked guard
 * page, then stack and I/O buffers), behind a {@linkcode DebugTarget} whose registers are a plain object.
 * Nothing here runs the guest: tests play the run loop by reporting stops themselves.
 *
 * @module
 */
import {
  EXC_STACK_ADDR,
  EXC_STACK_TOP,
  GDT_ADDR,
  INFO_ADDR,
  PD_ADDR,
  PDPT_ADDR,
  PML4_ADDR,
  PT_ADDR,
  STUB_ADDR,
} from "../../../vm/machine/abi.ts";
import { type ElfImage, parseElf, PF_W, PF_X } from "../../../vm/machine/elf.ts";
import { emptyRegisters, FXSAVE, type X86Registers } from "../../../vm/debug/registers.ts";
import type { DebugTarget } from "../../../vm/debug/target.ts";
import { guestPath } from "../../_hypervisor.ts";

export const PAGE = 4096;
/** Page-table entry bits. */
export const P = 1, RW = 2, US = 4, PS = 0x80, NX = 1n << 63n;

/** Sizes used for the test layout. */
export const HEAP_SIZE = 0x10000, STACK_SIZE = 0x10000, INPUT_SIZE = 0x4000, OUTPUT_SIZE = 0x4000;

/** The test guest's binary. */
export const TESTGUEST_PATH: string = guestPath("testguest");
export const TESTGUEST: Uint8Array = Deno.readFileSync(TESTGUEST_PATH);

/**
 * Where the test guest's segments start, page aligned: text (R+X), read-only data (R), data and .bss (R+W).
 * Taken from the binary, so the tests follow the guest runtime as it grows.
 */
export const TESTGUEST_SEGMENTS: { text: number; rodata: number; data: number } = (() => {
  const segs = parseElf(TESTGUEST).segments;
  const start = (flags: number) => segs.find((s) => s.flags === flags)!.vaddr & ~(PAGE - 1);
  return { text: start(5), rodata: start(4), data: start(6) };
})();

/** The address of a symbol of a guest binary (testguest by default), from its ELF symbol table. */
export function symbol(name: string, path = TESTGUEST_PATH): number {
  const file = path === TESTGUEST_PATH ? TESTGUEST : Deno.readFileSync(path);
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const shoff = Number(v.getBigUint64(40, true)),
    shentsize = v.getUint16(58, true),
    shnum = v.getUint16(60, true);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      type: v.getUint32(o + 4, true),
      offset: Number(v.getBigUint64(o + 24, true)),
      size: Number(v.getBigUint64(o + 32, true)),
      link: v.getUint32(o + 40, true),
    };
  };
  for (let i = 0; i < shnum; i++) {
    const symtab = section(i);
    if (symtab.type !== 2 /* SHT_SYMTAB */) continue;
    const strtab = section(symtab.link);
    for (let o = symtab.offset; o < symtab.offset + symtab.size; o += 24) {
      const at = strtab.offset + v.getUint32(o, true);
      const end = file.indexOf(0, at);
      if (new TextDecoder().decode(file.subarray(at, end)) === name) {
        return Number(v.getBigUint64(o + 8, true));
      }
    }
  }
  throw new Error(`${path} has no symbol ${name}`);
}

/** Plain memory with an unbacked hole; implements the physical side of a target. */
export class PlainMemory {
  readonly bytes: Uint8Array;
  readonly holeStart: number;
  readonly holeEnd: number;
  readonly writes: { gpa: number; length: number }[] = [];

  constructor(size: number, holeStart = size, holeEnd = size) {
    this.bytes = new Uint8Array(size);
    this.holeStart = holeStart;
    this.holeEnd = holeEnd;
  }

  backed(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + length > this.bytes.length) return false;
    return gpa + length <= this.holeStart || gpa >= this.holeEnd;
  }

  readPhysical(gpa: number, into: Uint8Array): boolean {
    if (!this.backed(gpa, into.length)) return false;
    into.set(this.bytes.subarray(gpa, gpa + into.length));
    return true;
  }

  writePhysical(gpa: number, data: Uint8Array): boolean {
    if (!this.backed(gpa, data.length)) return false;
    this.bytes.set(data, gpa);
    this.writes.push({ gpa, length: data.length });
    return true;
  }

  /** Writes a 64-bit page-table entry. */
  entry(at: number, value: bigint): void {
    new DataView(this.bytes.buffer).setBigUint64(at, value, true);
  }
}

/** The layout of the test guest (docs/ABI.md, "Memory map"). */
export interface TestLayout {
  imageEnd: number;
  heapBase: number;
  persistentEnd: number;
  scratchBase: number;
  stackTop: number;
  inputBase: number;
  outputBase: number;
  end: number;
}

/** testguest in memory, with registers, as a debug target. */
export class TestGuest extends PlainMemory implements DebugTarget {
  readonly elf: ElfImage;
  readonly layout: TestLayout;
  registers: X86Registers;
  registerWrites = 0;

  /** Lays out a guest binary (default: the committed testguest). */
  constructor(binary: Uint8Array = TESTGUEST) {
    const elf = parseElf(binary);
    const imageEnd = elf.end;
    const persistentEnd = imageEnd + HEAP_SIZE;
    const scratchBase = persistentEnd + PAGE;
    const stackTop = scratchBase + STACK_SIZE;
    const end = stackTop + INPUT_SIZE + OUTPUT_SIZE;
    super(end, persistentEnd, scratchBase);
    this.elf = elf;
    this.layout = {
      imageEnd,
      heapBase: imageEnd,
      persistentEnd,
      scratchBase,
      stackTop,
      inputBase: stackTop,
      outputBase: stackTop + INPUT_SIZE,
      end,
    };
    for (const s of elf.segments) {
      this.bytes.set(binary.subarray(s.fileOffset, s.fileOffset + s.fileSize), s.vaddr);
    }
    // Recognisable bytes in the system area, which the guest cannot see.
    this.bytes.fill(0xf4, STUB_ADDR, STUB_ADDR + PAGE);
    this.buildPageTables();
    const fxsave = new Uint8Array(FXSAVE.SIZE);
    const fv = new DataView(fxsave.buffer);
    fv.setUint16(FXSAVE.FCW, 0x37f, true);
    fv.setUint32(FXSAVE.MXCSR, 0x1f80, true);
    for (let i = 0; i < 16; i++) fxsave[FXSAVE.XMM0 + i] = i + 1; // xmm0 = 01 02 .. 10
    this.registers = {
      ...emptyRegisters(),
      rip: BigInt(elf.entry),
      rsp: BigInt(stackTop),
      rdi: BigInt(stackTop),
      cs: 0x33n,
      ss: 0x2bn,
      fxsave,
    };
  }

  /** PML4 → PDPT → PD → one PT per 2 MiB, 4 KiB pages, as the host builds them. */
  buildPageTables(): void {
    this.entry(PML4_ADDR, BigInt(PDPT_ADDR | P | RW | US));
    this.entry(PDPT_ADDR, BigInt(PD_ADDR | P | RW | US));
    const nPt = Math.ceil(this.layout.end / 0x200000);
    for (let i = 0; i < nPt; i++) this.entry(PD_ADDR + i * 8, BigInt((PT_ADDR + i * PAGE) | P | RW | US));
    const map = (start: number, end: number, user: boolean, write: boolean, exec: boolean) => {
      for (let a = start; a < end; a += PAGE) {
        const flags = BigInt(P | (user ? US : 0) | (write ? RW : 0)) | (exec ? 0n : NX);
        this.entry(PT_ADDR + (a / PAGE) * 8, BigInt(a) | flags);
      }
    };
    map(GDT_ADDR, GDT_ADDR + PAGE, false, true, false);
    map(STUB_ADDR, STUB_ADDR + PAGE, false, false, true);
    map(EXC_STACK_ADDR, EXC_STACK_TOP, false, true, false);
    map(INFO_ADDR, INFO_ADDR + PAGE, true, false, true); // the info page: data and the entry code
    for (const s of this.elf.segments) {
      map(
        s.vaddr,
        Math.ceil((s.vaddr + s.memSize) / PAGE) * PAGE,
        true,
        (s.flags & PF_W) !== 0,
        (s.flags & PF_X) !== 0,
      );
    }
    map(this.layout.heapBase, this.layout.persistentEnd, true, true, false);
    map(this.layout.scratchBase, this.layout.end, true, true, false);
  }

  readRegisters(): X86Registers {
    return { ...this.registers, fxsave: this.registers.fxsave?.slice() };
  }

  writeRegisters(registers: X86Registers): void {
    this.registerWrites++;
    this.registers = { ...registers, fxsave: registers.fxsave?.slice() };
  }

  cr3(): bigint {
    return BigInt(PML4_ADDR);
  }
}

function canRun(tool: string): boolean {
  try {
    return new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

const available = new Map<string, boolean>();
const warned = new Set<string>();

/**
 * Registers a test that needs external tools (gdb, gcc): without one it is skipped with one loud line per
 * tool, except in CI (`CI=true`), where a missing tool fails the test.
 */
export function toolTest(name: string, tools: readonly string[], fn: () => void | Promise<void>): void {
  const missing = tools.filter((t) => {
    if (!available.has(t)) available.set(t, canRun(t));
    return !available.get(t);
  });
  if (missing.length === 0) {
    Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(
        `${missing.join(", ")} missing in CI: the debugger tests must run there (apt-get install gdb gcc)`,
      );
    });
  } else {
    for (const t of missing.filter((t) => !warned.has(t))) {
      console.error(
        `!!! ${t} not found: SKIPPING every test that needs it (they run wherever ${t} is installed) !!!`,
      );
      warned.add(t);
    }
    Deno.test({ name, ignore: true, fn });
  }
}

/** A test that needs the real gdb; see {@linkcode toolTest}. */
export function gdbTest(name: string, fn: () => void | Promise<void>): void {
  toolTest(name, ["gdb"], fn);
}
