/**
 * The x86-64 special registers saved in a snapshot: their type, their 952-byte form in an `.hls` file, and
 * in any hypervisor's terms (each backend converts to its own registers).
 *
 * @module
 */

import { SREGS_OFFSET, SREGS_SIZE } from "./constants.ts";
import { type SnapshotAction, SnapshotFormatError } from "./errors.ts";
import { ByteReader } from "./_reader.ts";
import { ByteWriter } from "./_writer.ts";

/**
 * One segment register, with its hidden descriptor fields as KVM reports them.
 *
 * @example
 * ```ts
 * import type { Segment } from "./sregs.ts";
 *
 * const cs: Segment = {
 *   base: 0n, limit: 0xffffffff, selector: 0x33, type: 11, present: 1, dpl: 3,
 *   db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0,
 * };
 * console.log(cs.selector);
 * ```
 */
export interface Segment {
  /** Base address (u64). */
  base: bigint;
  /** Limit (u32). */
  limit: number;
  /** Selector (u16). */
  selector: number;
  /** Descriptor type, 0..15. */
  type: number;
  /** Present bit, 0 or 1. */
  present: number;
  /** Descriptor privilege level, 0..3. */
  dpl: number;
  /** Default operation size bit, 0 or 1. */
  db: number;
  /** Descriptor type bit (0 system, 1 code/data), 0 or 1. */
  s: number;
  /** 64-bit code segment bit, 0 or 1. */
  l: number;
  /** Granularity bit, 0 or 1. */
  g: number;
  /** Available-for-software bit, 0 or 1. */
  avl: number;
  /** KVM's "segment unusable" flag, 0 or 1. */
  unusable: number;
}

/**
 * A descriptor-table register (GDTR or IDTR).
 *
 * @example
 * ```ts
 * import type { DescriptorTable } from "./sregs.ts";
 *
 * const gdt: DescriptorTable = { base: 0x1000n, limit: 9 * 8 - 1 };
 * console.log(gdt.limit); // 71
 * ```
 */
export interface DescriptorTable {
  /** Linear base address (u64). */
  base: bigint;
  /** Limit (u16). */
  limit: number;
}

/**
 * The special registers of one vCPU. Registers that are 64 bits wide are bigints; narrower fields are numbers.
 *
 * @example
 * ```ts
 * import { emptySregs } from "./sregs.ts";
 *
 * const sregs = emptySregs();
 * sregs.cr3 = 0x5000n;
 * console.log(sregs.cr3); // 20480n
 * ```
 */
export interface Sregs {
  /** Code segment. */
  cs: Segment;
  /** Data segment. */
  ds: Segment;
  /** Extra segment. */
  es: Segment;
  /** FS. */
  fs: Segment;
  /** GS. */
  gs: Segment;
  /** Stack segment. */
  ss: Segment;
  /** Task register. */
  tr: Segment;
  /** Local descriptor table register. */
  ldt: Segment;
  /** Global descriptor table register. */
  gdt: DescriptorTable;
  /** Interrupt descriptor table register. */
  idt: DescriptorTable;
  /** CR0. */
  cr0: bigint;
  /** CR2 (last page-fault address). */
  cr2: bigint;
  /** CR3 (page-table root). */
  cr3: bigint;
  /** CR4. */
  cr4: bigint;
  /** CR8 (task priority, 0..15). */
  cr8: bigint;
  /** IA32_EFER. */
  efer: bigint;
  /** IA32_APIC_BASE. */
  apicBase: bigint;
  /** Pending external interrupts, 256 bits. */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

/**
 * The segment registers in the order both the file and `struct kvm_sregs` store them.
 *
 * @example
 * ```ts
 * import { SEGMENT_NAMES } from "./sregs.ts";
 *
 * console.log(SEGMENT_NAMES.join(",")); // cs,ds,es,fs,gs,ss,tr,ldt
 * ```
 */
export const SEGMENT_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;

/**
 * The flag fields of a segment, in file order, with the largest value their architectural range allows.
 *
 * @example
 * ```ts
 * import { SEGMENT_FLAGS } from "./sregs.ts";
 *
 * console.log(SEGMENT_FLAGS.map(([name]) => name).join(",")); // type,present,dpl,db,s,l,g,avl,unusable
 * ```
 */
export const SEGMENT_FLAGS = [
  ["type", 15],
  ["present", 1],
  ["dpl", 3],
  ["db", 1],
  ["s", 1],
  ["l", 1],
  ["g", 1],
  ["avl", 1],
  ["unusable", 1],
] as const;

function emptySegment(): Segment {
  return {
    base: 0n,
    limit: 0,
    selector: 0,
    type: 0,
    present: 0,
    dpl: 0,
    db: 0,
    s: 0,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

/**
 * Special registers with every field zero, the form the file stores when a snapshot has none.
 *
 * @example
 * ```ts
 * import { emptySregs } from "./sregs.ts";
 *
 * console.log(emptySregs().cs.selector); // 0
 * ```
 */
export function emptySregs(): Sregs {
  return {
    cs: emptySegment(),
    ds: emptySegment(),
    es: emptySegment(),
    fs: emptySegment(),
    gs: emptySegment(),
    ss: emptySegment(),
    tr: emptySegment(),
    ldt: emptySegment(),
    gdt: { base: 0n, limit: 0 },
    idt: { base: 0n, limit: 0 },
    cr0: 0n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0n,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

/**
 * Encodes registers in the file's form: 119 little-endian u64 (see docs/FORMAT.md), or all zeros for `null`.
 *
 * @param sregs The registers, or `null` when the snapshot has none.
 * @returns {@linkcode SREGS_SIZE} bytes.
 *
 * @example
 * ```ts
 * import { decodeSregs, emptySregs, encodeSregs } from "./sregs.ts";
 *
 * const sregs = emptySregs();
 * sregs.cs.selector = 0x33;
 * console.log(decodeSregs(encodeSregs(sregs)).cs.selector); // 51
 * ```
 */
export function encodeSregs(sregs: Sregs | null): Uint8Array {
  const bytes = new Uint8Array(SREGS_SIZE);
  if (sregs === null) return bytes;
  const writer = new ByteWriter(bytes);
  for (const name of SEGMENT_NAMES) {
    const segment = sregs[name];
    writer.u64(segment.base);
    writer.u64(segment.limit);
    writer.u64(segment.selector);
    for (const [flag] of SEGMENT_FLAGS) writer.u64(segment[flag]);
    writer.u64(0); // padding
  }
  for (const table of [sregs.gdt, sregs.idt]) {
    writer.u64(table.base);
    writer.u64(table.limit);
  }
  for (const value of [sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.cr8, sregs.efer, sregs.apicBase]) {
    writer.u64(value);
  }
  for (const word of sregs.interruptBitmap) writer.u64(word);
  return bytes;
}

/**
 * Decodes the file's 952-byte form and checks that every value fits its real width: limit u32, selector
 * u16, gdt/idt limit u16, the flag fields their architectural range (type 0..15, dpl 0..3, the bits 0..1),
 * padding 0, cr8 0..15.
 *
 * @param bytes {@linkcode SREGS_SIZE} bytes, as stored at file offset 160.
 * @param action Only changes the error message prefix.
 * @returns The registers.
 * @throws {SnapshotFormatError} `InvalidField` (field `sregs.<register>.<field>`) for a value out of range,
 *   `Truncated` if fewer than 952 bytes are given.
 *
 * @example
 * ```ts
 * import { decodeSregs } from "./sregs.ts";
 *
 * console.log(decodeSregs(new Uint8Array(952)).cr0); // 0n
 * ```
 */
export function decodeSregs(bytes: Uint8Array, action: SnapshotAction = "load"): Sregs {
  return (bytes.byteLength >= SREGS_SIZE ? decodeInRange(bytes) : undefined) ?? decodeOrThrow(bytes, action);
}

/**
 * The registers when every bounded value is in range, else undefined (then {@linkcode decodeOrThrow} finds
 * the first value out of range and says which). The same checks as there, on the same limits, reading the
 * bounded values as two 32-bit halves: a bigint per value made decoding ~3x slower (4.4 µs instead of 1.6 µs
 * warm, several times that in a cold start).
 */
function decodeInRange(bytes: Uint8Array): Sregs | undefined {
  const v = new DataView(bytes.buffer, bytes.byteOffset, SREGS_SIZE);
  let at = 0;
  let ok = true;
  const u64 = (): bigint => {
    const value = v.getBigUint64(at, true);
    at += 8;
    return value;
  };
  const bounded = (max: number): number => {
    const low = v.getUint32(at, true), high = v.getUint32(at + 4, true);
    at += 8;
    if (high !== 0 || low > max) ok = false;
    return low;
  };
  const sregs = emptySregs();
  for (const name of SEGMENT_NAMES) {
    const segment = sregs[name];
    segment.base = u64();
    segment.limit = bounded(0xffff_ffff);
    segment.selector = bounded(0xffff);
    for (const [flag, max] of SEGMENT_FLAGS) segment[flag] = bounded(max);
    bounded(0);
  }
  for (const name of ["gdt", "idt"] as const) {
    sregs[name].base = u64();
    sregs[name].limit = bounded(0xffff);
  }
  sregs.cr0 = u64();
  sregs.cr2 = u64();
  sregs.cr3 = u64();
  sregs.cr4 = u64();
  sregs.cr8 = BigInt(bounded(15));
  sregs.efer = u64();
  sregs.apicBase = u64();
  for (let i = 0; i < 4; i++) sregs.interruptBitmap[i] = u64();
  return ok ? sregs : undefined;
}

/** Decodes with a check, and a field name, at every value: throws at the first one out of range. */
function decodeOrThrow(bytes: Uint8Array, action: SnapshotAction): Sregs {
  const reader = new ByteReader(bytes.subarray(0, SREGS_SIZE), { fileOffset: SREGS_OFFSET, action });
  const bounded = (field: string, max: bigint): number => {
    const value = reader.u64(`sregs.${field}`);
    if (value > max) {
      throw new SnapshotFormatError("InvalidField", {
        field: `sregs.${field}`,
        found: value,
        expected: max === 0n ? "0" : `at most ${max}`,
        action,
      });
    }
    return Number(value);
  };
  const sregs = emptySregs();
  for (const name of SEGMENT_NAMES) {
    const segment = sregs[name];
    segment.base = reader.u64(`sregs.${name}.base`);
    segment.limit = bounded(`${name}.limit`, 0xffff_ffffn);
    segment.selector = bounded(`${name}.selector`, 0xffffn);
    for (const [flag, max] of SEGMENT_FLAGS) segment[flag] = bounded(`${name}.${flag}`, BigInt(max));
    bounded(`${name}.padding`, 0n);
  }
  for (const name of ["gdt", "idt"] as const) {
    sregs[name].base = reader.u64(`sregs.${name}.base`);
    sregs[name].limit = bounded(`${name}.limit`, 0xffffn);
  }
  sregs.cr0 = reader.u64("sregs.cr0");
  sregs.cr2 = reader.u64("sregs.cr2");
  sregs.cr3 = reader.u64("sregs.cr3");
  sregs.cr4 = reader.u64("sregs.cr4");
  // CR8 is the 4-bit task-priority register; KVM rejects anything wider.
  sregs.cr8 = BigInt(bounded("cr8", 15n));
  sregs.efer = reader.u64("sregs.efer");
  sregs.apicBase = reader.u64("sregs.apic_base");
  for (let i = 0; i < 4; i++) sregs.interruptBitmap[i] = reader.u64(`sregs.interrupt_bitmap[${i}]`);
  return sregs;
}
