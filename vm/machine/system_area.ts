/**
 * The host-owned part of guest memory (docs/ABI.md): page tables, GDT, TSS with I/O bitmap, IDT, exception
 * stubs and exception stack below `SYSTEM_AREA_END`, and the info page. None of it is writable by the guest
 * (CPL3); the info page is readable.
 *
 * The system area is a pure function of the layout and of the image pages' permissions, so it is never
 * taken from a snapshot file: a file's copy proves nothing (its hashes prove integrity, not authorship).
 * Loaders read only the image's page-table entries from a file, check each against the ABI's three allowed
 * forms, and rebuild everything else ({@linkcode imagePageEntries}, {@linkcode buildSystemArea}).
 *
 * @module
 */
import { SnapshotFormatError } from "../../format/errors.ts";
import {
  ERROR_CODE_VECTORS,
  EXC_STACK_ADDR,
  EXC_STACK_TOP,
  GDT_ADDR,
  GDT_ENTRIES,
  IDT_ADDR,
  IDT_VECTORS,
  IMAGE_BASE,
  INFO_ADDR,
  INFO_ENTRY,
  INFO_GENERATION,
  INFO_SIZE,
  INFO_XSAVE_AREA,
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
  STUB_ADDR,
  SYSTEM_AREA_END,
  TSS_ADDR,
  TSS_LIMIT,
} from "./abi.ts";
import type { Layout } from "./layout.ts";
import type { Mapping } from "../memory/mapping.ts";
import { type ElfSegment, PF_W, PF_X } from "./elf.ts";

const P = 1, RW = 2, US = 4, ACCESSED = 0x20, DIRTY = 0x40;
/** NX is bit 63: bit 31 of the entry's high 32-bit word. */
const NX_HIGH = 0x8000_0000;
/** Flags of every mapped leaf entry: present, accessed and dirty preset so the CPU never writes page tables. */
const LEAF = P | ACCESSED | DIRTY;

/**
 * The only page-table entries an image page may have (low 32 bits without the address, high 32 bits): not
 * mapped, read-only, read-write, or read-execute; always user, never writable and executable together (the
 * ELF loader refuses W+X segments too).
 */
const IMAGE_ENTRY_FORMS: readonly (readonly [number, number])[] = [
  [LEAF | US, NX_HIGH],
  [LEAF | US | RW, NX_HIGH],
  [LEAF | US, 0],
];

interface PageRange {
  start: number;
  end: number;
  user: boolean;
  write: boolean;
  exec: boolean;
}

/** Every mapped range but the image's: system pages, the info page, heap and scratch region. */
function fixedRanges(layout: Layout): PageRange[] {
  return [
    { start: GDT_ADDR, end: GDT_ADDR + PAGE, user: false, write: true, exec: false },
    { start: STUB_ADDR, end: STUB_ADDR + PAGE, user: false, write: false, exec: true },
    { start: EXC_STACK_ADDR, end: EXC_STACK_TOP, user: false, write: true, exec: false },
    { start: INFO_ADDR, end: INFO_ADDR + PAGE, user: true, write: false, exec: true },
    { start: layout.heapBase, end: layout.persistentSize, user: true, write: true, exec: false },
    {
      start: layout.scratchBase,
      end: layout.scratchBase + layout.scratchSize,
      user: true,
      write: true,
      exec: false,
    },
  ];
}

function imageRanges(segments: readonly ElfSegment[]): PageRange[] {
  return segments.map((s) => ({
    start: s.vaddr,
    end: Math.ceil((s.vaddr + s.memSize) / PAGE) * PAGE,
    user: true,
    write: (s.flags & PF_W) !== 0,
    exec: (s.flags & PF_X) !== 0,
  }));
}

/** Byte offset (from guest-physical 0) of the page-table entry that maps `address`. */
function pteOffset(address: number): number {
  return PT_ADDR + (address / PAGE) * 8;
}

/**
 * Writes page tables, GDT, TSS, IDT and exception stubs into `mem` (the persistent region, starting at
 * guest-physical 0, zero-filled).
 *
 * @example
 * ```ts ignore
 * writeSystemArea(persistent.bytes, layout, elf.segments);
 * ```
 */
export function writeSystemArea(mem: Uint8Array, layout: Layout, segments: readonly ElfSegment[]): void {
  writeTables(mem, layout, [...imageRanges(segments), ...fixedRanges(layout)]);
}

/**
 * The system area (guest-physical 0 to `SYSTEM_AREA_END`) for a layout whose image pages have the given
 * page-table entries (from {@linkcode imagePageEntries}).
 *
 * @example
 * ```ts
 * import { buildSystemArea } from "./system_area.ts";
 * import { computeLayout } from "./layout.ts";
 * const layout = computeLayout({ imageEnd: 0x201000, heapSize: 4096, stackSize: 8192, inputDataSize: 4096, outputDataSize: 4096 });
 * console.log(buildSystemArea(layout, new Uint8Array(8)).length); // 1966080
 * ```
 */
export function buildSystemArea(layout: Layout, imageEntries: Uint8Array): Uint8Array {
  const mem = new Uint8Array(SYSTEM_AREA_END);
  writeTables(mem, layout, fixedRanges(layout));
  mem.set(imageEntries, pteOffset(IMAGE_BASE));
  return mem;
}

/**
 * Reads the page-table entries of a snapshot's image pages from its memory (`memory.read(offset, length)`
 * at guest-physical offsets) and checks each: identity-mapped, and one of the forms the ABI allows (not mapped, R, RW, RX; user;
 * never W+X). These are the only bytes of the system area a loader takes from a file.
 *
 * @example
 * ```ts ignore
 * const entries = imagePageEntries(blob, layout);
 * ```
 */
export function imagePageEntries(
  memory: { read(offset: number, length: number): Uint8Array },
  layout: Layout,
): Uint8Array {
  const first = pteOffset(IMAGE_BASE), end = pteOffset(layout.imageEnd);
  const entries = memory.read(first, end - first);
  if (entries.length !== end - first) {
    throw new SnapshotFormatError("Truncated", {
      field: "page tables",
      found: `${entries.length} bytes of image page-table entries`,
      expected: `${end - first} bytes`,
    });
  }
  const v = new DataView(entries.buffer);
  for (let i = 0; i < entries.length; i += 8) {
    const address = IMAGE_BASE + (i / 8) * PAGE;
    const low = v.getUint32(i, true), high = v.getUint32(i + 4, true);
    if (low === 0 && high === 0) continue;
    const flags = low & 0xfff;
    const ok = (low & ~0xfff) >>> 0 === address &&
      IMAGE_ENTRY_FORMS.some(([f, h]) => f === flags && h === high);
    if (!ok) {
      throw new SnapshotFormatError("InvalidField", {
        field: `page table entry of image page 0x${address.toString(16)}`,
        found: `0x${high.toString(16).padStart(8, "0")}${low.toString(16).padStart(8, "0")}`,
        expected: "0, or the page itself mapped user R, RW or RX (docs/ABI.md)",
      });
    }
  }
  return entries;
}

function writeTables(mem: Uint8Array, layout: Layout, ranges: readonly PageRange[]): void {
  const words = new Uint32Array(mem.buffer, mem.byteOffset, layout.ptPages * 1024 + PML4_ADDR / 4);
  const entry = (addr: number, low: number, high: number) => {
    words[addr / 4] = low;
    words[addr / 4 + 1] = high;
  };
  entry(PML4_ADDR, PDPT_ADDR | P | RW | US | ACCESSED, 0);
  entry(PDPT_ADDR, PD_ADDR | P | RW | US | ACCESSED, 0);
  const nPt = layout.ptPages - 3;
  for (let i = 0; i < nPt; i++) entry(PD_ADDR + i * 8, (PT_ADDR + i * PAGE) | P | RW | US | ACCESSED, 0);
  for (const r of ranges) {
    const flags = LEAF | (r.user ? US : 0) | (r.write ? RW : 0);
    const high = r.exec ? 0 : NX_HIGH;
    // Guest addresses stay below 1 GiB, so the high word holds only NX.
    for (let a = r.start; a < r.end; a += PAGE) entry(pteOffset(a), (a | flags) >>> 0, high);
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

/** Bytes per IDT stub: the stub of vector `v` is at `STUB_ADDR + v * STUB_SIZE`. */
export const STUB_SIZE = 16;

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
    mem[i++] = 0x50; // push %rax: the guest's RAX, at EXC_STACK_TOP + FRAME.RAX (ABI 3)
    mem[i++] = 0xb8; // mov $vec, %eax
    v.setUint32(i, vec, true);
    i += 4;
    mem[i++] = 0xe7; // out %eax, $PORT_EXCEPTION
    mem[i++] = PORT_EXCEPTION;
    mem[i++] = 0xf4; // hlt: never resumed
  }
}

/**
 * x86-64 machine code of the entry path, at `INFO_ENTRY` of the info page (assembled from:
 * `xrstor_entry: mov $-1,%eax; mov $-1,%edx; xrstor64 area(%rip); jmp 1f;
 * fxrstor_entry: fxrstor64 area(%rip); 1: xor %eax,%eax; xor %edx,%edx; push %r11; xor %r11d,%r11d; ret`,
 * with `area` at `INFO_XSAVE_AREA`). The rip-relative displacements depend on those two offsets.
 */
const ENTRY_CODE = new Uint8Array([
  0xb8,
  0xff,
  0xff,
  0xff,
  0xff,
  0xba,
  0xff,
  0xff,
  0xff,
  0xff,
  0x48,
  0x0f,
  0xae,
  0x2d,
  0x2e,
  0xfd,
  0xff,
  0xff,
  0xeb,
  0x08,
  0x48,
  0x0f,
  0xae,
  0x0d,
  0x24,
  0xfd,
  0xff,
  0xff,
  0x31,
  0xc0,
  0x31,
  0xd2,
  0x41,
  0x53,
  0x45,
  0x31,
  0xdb,
  0xc3,
]);

/** The constant part of the info page: the initial-state XSAVE area and the entry code. */
const INFO_STATIC: Uint8Array = (() => {
  const page = new Uint8Array(INFO_ENTRY + ENTRY_CODE.length - INFO_XSAVE_AREA);
  const v = new DataView(page.buffer);
  v.setUint16(0, 0x037f, true); // FCW: all x87 exceptions masked, extended precision
  v.setUint32(24, 0x1f80, true); // MXCSR: all SSE exceptions masked, round to nearest
  // XSTATE_BV and XCOMP_BV (the header at 512) stay 0: XRSTOR puts every component in its initial state.
  page.set(ENTRY_CODE, INFO_ENTRY - INFO_XSAVE_AREA);
  return page;
})();

/**
 * Writes the constant part of the info page (the XSAVE area and the entry code) into a sandbox's
 * persistent memory: after its memory is made or mapped from a snapshot (files store the page's bytes, but a
 * file's copy is never trusted: this overwrites it).
 *
 * @example
 * ```ts ignore
 * writeInfoPage(vm.persistent);
 * ```
 */
export function writeInfoPage(persistent: Mapping): void {
  persistent.write(INFO_ADDR + INFO_XSAVE_AREA, INFO_STATIC);
}

/**
 * Writes a new generation and fresh entropy into the info page of a sandbox's persistent memory: called
 * for every sandbox and after every restore, so that two sandboxes of one snapshot, or one sandbox before
 * and after a restore, never see the same generation (docs/ABI.md, "Info page").
 *
 * @example
 * ```ts ignore
 * newGeneration(vm.persistent);
 * ```
 */
export function newGeneration(persistent: Mapping): void {
  persistent.writeFrom(INFO_ADDR, BigInt(freshInfo()), INFO_SIZE);
}

/**
 * The host address (a number, as user-space addresses are below 2^53) of `INFO_SIZE` fresh bytes for the
 * info page (a new generation and seed), valid until the next call: restore copies them in with its page
 * work, without a call of its own.
 *
 * @example
 * ```ts
 * import { freshInfo } from "./system_area.ts";
 * console.log(freshInfo() !== freshInfo()); // true
 * ```
 */
export function freshInfo(): number {
  if (poolUsed + INFO_SIZE > pool.length) {
    crypto.getRandomValues(pool);
    poolUsed = 0;
  }
  const at = poolUsed;
  poolUsed += INFO_SIZE;
  // A generation is never 0, so a guest can use 0 as "not seeded yet".
  const word = (at + INFO_GENERATION) >>> 2; // INFO_SIZE and INFO_GENERATION are multiples of 4
  if (poolWords[word] === 0 && poolWords[word + 1] === 0) pool[at + INFO_GENERATION] = 1;
  // From the pool's address, taken once: this runs on every restore.
  return (poolAddress ??= addressOf(pool)) + at;
}

/** Entropy fetched ahead, 4 KiB at a time: one `getRandomValues` per hundred generations, not per restore. */
const pool = new Uint8Array(4096);
const poolWords = new Uint32Array(pool.buffer);
let poolUsed = pool.length;
/** The pool's host address (its memory never moves: an ArrayBuffer's store stays where it was made). */
let poolAddress: number | undefined;

function addressOf(bytes: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/**
 * Runs `fn` with the info page of `persistent` zeroed, then puts it back: snapshots store no generation
 * (every sandbox made from one gets a new one), so equal states give byte-identical snapshots.
 *
 * @example
 * ```ts ignore
 * const blob = withoutGeneration(vm.persistent, () => Blob.copyOf(vm.persistent));
 * ```
 */
export function withoutGeneration<T>(persistent: Mapping, fn: () => T): T {
  const saved = persistent.read(INFO_ADDR, INFO_SIZE);
  persistent.write(INFO_ADDR, new Uint8Array(INFO_SIZE));
  try {
    return fn();
  } finally {
    persistent.write(INFO_ADDR, saved);
  }
}

/** The most of an image that is prefaulted (bigger images keep the rest lazy). */
const PREFAULT_IMAGE_MAX = 1024 * 1024;

/**
 * Gives the sandbox private copies of its info page and image pages (up to 1 MiB) before the guest runs. In a
 * copy-on-write mapping of a snapshot, a guest access to a page still backed by the page cache takes KVM's
 * slow path (the memslot is writable, so KVM first asks for a writable host page and falls back), and a
 * write adds a host copy-on-write fault on top; both happen inside an already costly shadow page fault.
 * Measured on the first call after `fromSnapshot`: 297 µs without, 215 µs with (prefaulting page tables,
 * descriptor tables or the page cache read-only gained nothing). The info page sits right below the image
 * (`INFO_ADDR + PAGE === IMAGE_BASE`) and is written by the host for every sandbox
 * ({@linkcode writeInfoPage}, {@linkcode newGeneration}): copied in the same `madvise`, it costs no page
 * fault of its own (a cold start 13 µs faster here, measured A/B in one process).
 *
 * @example
 * ```ts ignore
 * prefaultInfoAndImage(persistent, layout);
 * ```
 */
export function prefaultInfoAndImage(mem: Mapping, layout: Layout): void {
  mem.prefault(
    INFO_ADDR,
    IMAGE_BASE - INFO_ADDR + Math.min(layout.imageEnd - IMAGE_BASE, PREFAULT_IMAGE_MAX),
  );
}
