/**
 * Builds the host-owned part of guest memory: page tables, GDT, TSS with I/O bitmap, IDT and exception
 * stubs (docs/ABI.md). None of it is mapped for the guest (CPL3) to read or write.
 *
 * @module
 */
import {
  CR0,
  CR4,
  EFER,
  ERROR_CODE_VECTORS,
  EXC_STACK_ADDR,
  EXC_STACK_TOP,
  GDT_ADDR,
  GDT_ENTRIES,
  IDT_ADDR,
  IDT_VECTORS,
  IMAGE_BASE,
  PAGE,
  PD_ADDR,
  PDPT_ADDR,
  PML4_ADDR,
  PORT_ABORT,
  PORT_DONE,
  PORT_EXCEPTION,
  PORT_HOST_CALL,
  PORT_LOG,
  PT_ADDR,
  SEL_KERNEL_CODE,
  SEL_TSS,
  SEL_USER_CODE,
  SEL_USER_DATA,
  STUB_ADDR,
  TSS_ADDR,
  TSS_LIMIT,
} from "./abi.ts";
import { SREGS } from "../../ffi/linux/kvm.ts";
import type { Layout } from "./layout.ts";
import type { Mapping } from "../memory/mapping.ts";
import { type ElfSegment, PF_W, PF_X } from "./elf.ts";
import { STUB_SIZE } from "./exception_frame.ts";

const P = 1, RW = 2, US = 4, ACCESSED = 0x20, DIRTY = 0x40;
/** NX is bit 63: bit 31 of the entry's high 32-bit word. */
const NX_HIGH = 0x8000_0000;

interface PageRange {
  start: number;
  end: number;
  user: boolean;
  write: boolean;
  exec: boolean;
}

function mappedRanges(layout: Layout, segments: readonly ElfSegment[]): PageRange[] {
  const r: PageRange[] = [
    { start: GDT_ADDR, end: GDT_ADDR + PAGE, user: false, write: true, exec: false },
    { start: STUB_ADDR, end: STUB_ADDR + PAGE, user: false, write: false, exec: true },
    { start: EXC_STACK_ADDR, end: EXC_STACK_TOP, user: false, write: true, exec: false },
  ];
  for (const s of segments) {
    r.push({
      start: s.vaddr,
      end: Math.ceil((s.vaddr + s.memSize) / PAGE) * PAGE,
      user: true,
      write: (s.flags & PF_W) !== 0,
      exec: (s.flags & PF_X) !== 0,
    });
  }
  r.push({ start: layout.heapBase, end: layout.persistentSize, user: true, write: true, exec: false });
  r.push({
    start: layout.scratchBase,
    end: layout.scratchBase + layout.scratchSize,
    user: true,
    write: true,
    exec: false,
  });
  return r;
}

/**
 * Writes page tables, GDT, TSS, IDT and exception stubs into `mem` (the persistent region, starting at
 * guest-physical 0, zero-filled). Accessed/dirty bits are preset so the CPU never writes page tables
 * (which would copy-on-write them in snapshot-backed memory).
 *
 * @example
 * ```ts
 * // writeSystemArea(persistent.bytes, layout, elf.segments);
 * ```
 */
export function writeSystemArea(mem: Uint8Array, layout: Layout, segments: readonly ElfSegment[]): void {
  const words = new Uint32Array(mem.buffer, mem.byteOffset, layout.ptPages * 1024 + PML4_ADDR / 4);
  const entry = (addr: number, low: number, high: number) => {
    words[addr / 4] = low;
    words[addr / 4 + 1] = high;
  };
  entry(PML4_ADDR, PDPT_ADDR | P | RW | US | ACCESSED, 0);
  entry(PDPT_ADDR, PD_ADDR | P | RW | US | ACCESSED, 0);
  const nPt = layout.ptPages - 3;
  for (let i = 0; i < nPt; i++) entry(PD_ADDR + i * 8, (PT_ADDR + i * PAGE) | P | RW | US | ACCESSED, 0);
  for (const r of mappedRanges(layout, segments)) {
    const flags = P | ACCESSED | DIRTY | (r.user ? US : 0) | (r.write ? RW : 0);
    const high = r.exec ? 0 : NX_HIGH;
    for (let a = r.start; a < r.end; a += PAGE) {
      // Guest addresses stay below 1 GiB, so the high word holds only NX.
      words[(PT_ADDR + (a / PAGE) * 8) / 4] = (a | flags) >>> 0;
      words[(PT_ADDR + (a / PAGE) * 8) / 4 + 1] = high;
    }
  }
  const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  writeGdt(v);
  writeTss(mem, v);
  writeIdtAndStubs(mem, v);
}

function writeGdt(v: DataView): void {
  // Accessed bits preset (type 0xB / 0x3) so the CPU never writes the GDT.
  const gdt: bigint[] = [
    0n,
    0x00af9b000000ffffn, // 0x08 kernel code64
    0x00cf93000000ffffn, // 0x10 kernel data
    0n,
    0n,
    0x00cff3000000ffffn, // 0x28 user data, DPL3 (selector 0x2b)
    0x00affb000000ffffn, // 0x30 user code64, DPL3 (selector 0x33)
  ];
  const tss = BigInt(TSS_ADDR);
  gdt.push(
    BigInt(TSS_LIMIT) | ((tss & 0xffffffn) << 16n) | (0x8bn << 40n) | (((tss >> 24n) & 0xffn) << 56n),
    tss >> 32n,
  );
  if (gdt.length !== GDT_ENTRIES) throw new Error("GDT size mismatch");
  gdt.forEach((d, i) => v.setBigUint64(GDT_ADDR + i * 8, d, true));
}

function writeTss(mem: Uint8Array, v: DataView): void {
  v.setBigUint64(TSS_ADDR + 4, BigInt(EXC_STACK_TOP), true); // RSP0
  v.setUint16(TSS_ADDR + 102, 104, true); // I/O bitmap offset
  // Bitmap: a set bit denies the port; only the guest ports are allowed. The trailing 0xff byte is
  // required by the CPU.
  mem.fill(0xff, TSS_ADDR + 104, TSS_ADDR + 104 + 33);
  // A 32-bit `out` to port P checks the bits of P..P+3, so the allowed span runs 3 ports past the last
  // guest port; `out` to 0xE4..0xE6 exits to the host, which rejects it as an undefined port.
  const first = Math.min(PORT_DONE, PORT_HOST_CALL, PORT_ABORT, PORT_LOG);
  const last = Math.max(PORT_DONE, PORT_HOST_CALL, PORT_ABORT, PORT_LOG) + 3;
  for (let port = first; port <= last; port++) mem[TSS_ADDR + 104 + (port >> 3)] &= ~(1 << (port & 7));
}

function writeIdtAndStubs(mem: Uint8Array, v: DataView): void {
  for (let vec = 0; vec < IDT_VECTORS; vec++) {
    const handler = STUB_ADDR + vec * STUB_SIZE;
    const g = IDT_ADDR + vec * 16;
    v.setUint16(g, handler & 0xffff, true);
    v.setUint16(g + 2, SEL_KERNEL_CODE, true);
    mem[g + 4] = 0;
    // Interrupt gate; DPL3 for #BP so `int3` at CPL3 reports a breakpoint, not #GP.
    mem[g + 5] = vec === 3 ? 0xee : 0x8e;
    v.setUint16(g + 6, (handler >>> 16) & 0xffff, true);
    v.setUint32(g + 8, 0, true);
    let i = handler;
    if (!ERROR_CODE_VECTORS.has(vec)) {
      mem[i++] = 0x6a; // push $0: uniform frame with an error code slot
      mem[i++] = 0x00;
    }
    mem[i++] = 0xb8; // mov $vec, %eax
    v.setUint32(i, vec, true);
    i += 4;
    mem[i++] = 0xe7; // out %eax, $PORT_EXCEPTION
    mem[i++] = PORT_EXCEPTION;
    mem[i++] = 0xf4; // hlt: never resumed
  }
}

function setSegment(v: DataView, off: number, s: {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
}): void {
  v.setBigUint64(off, s.base, true);
  v.setUint32(off + 8, s.limit, true);
  v.setUint16(off + 12, s.selector, true);
  const flags = [s.type, 1, s.dpl, s.db, s.s, s.l, s.g, 0, 0, 0];
  flags.forEach((f, i) => v.setUint8(off + 14 + i, f));
}

/**
 * Fills a `struct kvm_sregs` (312 B) for long mode at CPL3, starting from `template` (the vCPU's reset state,
 * which carries values such as `apic_base` that KVM expects back).
 *
 * @example
 * ```ts
 * // vcpu.setSregs(buildSregs(vcpu.getSregs()));
 * ```
 */
export function buildSregs(template: Uint8Array): Uint8Array {
  const out = template.slice();
  const v = new DataView(out.buffer);
  const data = {
    base: 0n,
    limit: 0xffffffff,
    selector: SEL_USER_DATA,
    type: 3,
    dpl: 3,
    db: 1,
    s: 1,
    l: 0,
    g: 1,
  };
  setSegment(v, SREGS.CS, { ...data, selector: SEL_USER_CODE, type: 11, db: 0, l: 1 });
  setSegment(v, SREGS.SS, data);
  for (const off of [SREGS.DS, SREGS.ES, SREGS.FS, SREGS.GS]) setSegment(v, off, { ...data, selector: 0 });
  setSegment(v, SREGS.TR, {
    base: BigInt(TSS_ADDR),
    limit: TSS_LIMIT,
    selector: SEL_TSS,
    type: 11,
    dpl: 0,
    db: 0,
    s: 0,
    l: 0,
    g: 0,
  });
  v.setBigUint64(SREGS.GDT, BigInt(GDT_ADDR), true);
  v.setUint16(SREGS.GDT + 8, GDT_ENTRIES * 8 - 1, true);
  v.setBigUint64(SREGS.IDT, BigInt(IDT_ADDR), true);
  v.setUint16(SREGS.IDT + 8, IDT_VECTORS * 16 - 1, true);
  v.setBigUint64(SREGS.CR0, CR0, true);
  v.setBigUint64(SREGS.CR2, 0n, true);
  v.setBigUint64(SREGS.CR3, BigInt(PML4_ADDR), true);
  v.setBigUint64(SREGS.CR4, CR4, true);
  v.setBigUint64(SREGS.CR8, 0n, true);
  v.setBigUint64(SREGS.EFER, EFER, true);
  return out;
}

/** The most of an image that is prefaulted (bigger images keep the rest lazy). */
const PREFAULT_IMAGE_MAX = 1024 * 1024;

/**
 * Gives the sandbox private copies of its image pages (up to 1 MiB) before the guest runs. In a
 * copy-on-write mapping of a snapshot, a guest access to a page still backed by the page cache takes KVM's
 * slow path (the memslot is writable, so KVM first asks for a writable host page and falls back), and a
 * write adds a host copy-on-write fault on top; both happen inside an already costly shadow page fault.
 * Measured on the first call after `fromSnapshot`: 297 µs without, 215 µs with (prefaulting page tables,
 * descriptor tables or the page cache read-only gained nothing).
 */
export function prefaultImage(mem: Mapping, layout: Layout): void {
  mem.prefault(IMAGE_BASE, Math.min(layout.imageEnd - IMAGE_BASE, PREFAULT_IMAGE_MAX));
}
