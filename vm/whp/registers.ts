/**
 * Register encoding between snapvm's neutral types (`Registers`, `EntryRegisters`, `Sregs`) and arrays of
 * `WHV_REGISTER_VALUE` (16 bytes each) for `WHvGet/SetVirtualProcessorRegisters`. Pure: the buffers are
 * plain bytes; the backend passes them (16-byte aligned) to the API.
 *
 * @module
 */
import { REGISTER_VALUE, SEGMENT, TABLE, WHV_REGISTER_NAME as R } from "../../ffi/windows/winhvplatform.ts";
import { REGISTER_NAMES, type Registers } from "../backend/backend.ts";
import type { DescriptorTable, Segment, Sregs } from "../../format/sregs.ts";

/**
 * WHP names of the general-purpose registers, in `REGISTER_NAMES` order (rax, rbx, rcx, rdx, rsi, rdi, rsp,
 * rbp, r8-r15, rip, rflags). Note that WHP numbers them in hardware order (rax, rcx, rdx, rbx, ...).
 *
 * @example
 * ```ts
 * import { GP_NAMES } from "./registers.ts";
 * console.log(GP_NAMES.length); // 18
 * ```
 */
export const GP_NAMES: readonly number[] = [
  R.Rax,
  R.Rbx,
  R.Rcx,
  R.Rdx,
  R.Rsi,
  R.Rdi,
  R.Rsp,
  R.Rbp,
  R.R8,
  R.R9,
  R.R10,
  R.R11,
  R.R12,
  R.R13,
  R.R14,
  R.R15,
  R.Rip,
  R.Rflags,
];

/**
 * WHP names of the special registers, in the order {@linkcode encodeSregs} writes them (the segment order
 * of `SEGMENT_NAMES`, then GDTR, IDTR, control registers, EFER, APIC base).
 *
 * @example
 * ```ts
 * import { SREG_NAMES } from "./registers.ts";
 * console.log(SREG_NAMES.length); // 17
 * ```
 */
export const SREG_NAMES: readonly number[] = [
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
  R.Cr0,
  R.Cr2,
  R.Cr3,
  R.Cr4,
  R.Cr8,
  R.Efer,
  R.ApicBase,
];

/**
 * Registers a CPL3 guest cannot change but a crafted or crashed one could leave odd through CPL0 stubs, and
 * that `resetVcpu(true)` brings back to the values a fresh virtual processor has: debug registers, XCR0,
 * syscall/sysenter MSRs, PAT, TSC_AUX, kernel GS base.
 *
 * @example
 * ```ts
 * import { FULL_RESET_NAMES } from "./registers.ts";
 * console.log(FULL_RESET_NAMES.length > 0);
 * ```
 */
export const FULL_RESET_NAMES: readonly number[] = [
  R.Dr0,
  R.Dr1,
  R.Dr2,
  R.Dr3,
  R.Dr6,
  R.Dr7,
  R.XCr0,
  R.KernelGsBase,
  R.Pat,
  R.SysenterCs,
  R.SysenterEip,
  R.SysenterEsp,
  R.Star,
  R.Lstar,
  R.Cstar,
  R.Sfmask,
  R.TscAux,
];

/**
 * Event state the last run may have left pending (an exception being delivered, an interrupt shadow),
 * reset on every `resetVcpu`.
 *
 * @example
 * ```ts
 * import { PENDING_NAMES } from "./registers.ts";
 * console.log(PENDING_NAMES.length); // 3
 * ```
 */
export const PENDING_NAMES: readonly number[] = [R.PendingInterruption, R.InterruptState, R.PendingEvent];

/**
 * The name array for a register list, as `WHvGet/SetVirtualProcessorRegisters` take it (UINT32 each).
 *
 * @example
 * ```ts
 * import { GP_NAMES, nameArray } from "./registers.ts";
 * console.log(nameArray(GP_NAMES)[16]); // 16 (Rip)
 * ```
 */
export function nameArray(names: readonly number[]): Uint32Array {
  return Uint32Array.from(names);
}

/**
 * Packs segment attributes: SegmentType bits 0-3, NonSystemSegment 4, DPL 5-6, Present 7, Available 12,
 * Long 13, Default (D/B) 14, Granularity 15. KVM's "unusable" flag has no WHP bit; an unusable segment is
 * encoded as not present, which is how VMX (and so WHP) treats it.
 *
 * @example
 * ```ts
 * import { segmentAttributes } from "./registers.ts";
 * const cs = { base: 0n, limit: 0xffffffff, selector: 0x33, type: 11, present: 1, dpl: 3, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
 * console.log(segmentAttributes(cs).toString(16)); // a0fb
 * ```
 */
export function segmentAttributes(s: Segment): number {
  const present = s.unusable ? 0 : s.present & 1;
  return ((s.type & 0xf) << SEGMENT.TYPE_SHIFT) | ((s.s & 1) << SEGMENT.S_SHIFT) |
    ((s.dpl & 3) << SEGMENT.DPL_SHIFT) | (present << SEGMENT.PRESENT_SHIFT) |
    ((s.avl & 1) << SEGMENT.AVL_SHIFT) |
    ((s.l & 1) << SEGMENT.L_SHIFT) | ((s.db & 1) << SEGMENT.DB_SHIFT) | ((s.g & 1) << SEGMENT.G_SHIFT);
}

/**
 * Writes a `WHV_X64_SEGMENT_REGISTER` at `at`.
 *
 * @example
 * ```ts
 * import { decodeSegment, encodeSegment } from "./registers.ts";
 * const v = new DataView(new ArrayBuffer(16));
 * encodeSegment(v, 0, { base: 0n, limit: 0xffffffff, selector: 0x2b, type: 3, present: 1, dpl: 3, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 });
 * console.log(decodeSegment(v, 0).selector); // 43
 * ```
 */
export function encodeSegment(v: DataView, at: number, s: Segment): void {
  v.setBigUint64(at + SEGMENT.BASE, s.base, true);
  v.setUint32(at + SEGMENT.LIMIT, s.limit, true);
  v.setUint16(at + SEGMENT.SELECTOR, s.selector, true);
  v.setUint16(at + SEGMENT.ATTRIBUTES, segmentAttributes(s), true);
}

/**
 * Reads a `WHV_X64_SEGMENT_REGISTER` at `at`. `unusable` is reported as the inverse of Present, as KVM
 * reports a not-present segment on VMX.
 *
 * @example
 * ```ts
 * import { decodeSegment } from "./registers.ts";
 * const v = new DataView(new ArrayBuffer(16));
 * v.setUint16(14, 0xa0fb, true);
 * console.log(decodeSegment(v, 0).l); // 1
 * ```
 */
export function decodeSegment(v: DataView, at: number): Segment {
  const a = v.getUint16(at + SEGMENT.ATTRIBUTES, true);
  const present = (a >> SEGMENT.PRESENT_SHIFT) & 1;
  return {
    base: v.getBigUint64(at + SEGMENT.BASE, true),
    limit: v.getUint32(at + SEGMENT.LIMIT, true),
    selector: v.getUint16(at + SEGMENT.SELECTOR, true),
    type: (a >> SEGMENT.TYPE_SHIFT) & 0xf,
    present,
    dpl: (a >> SEGMENT.DPL_SHIFT) & 3,
    db: (a >> SEGMENT.DB_SHIFT) & 1,
    s: (a >> SEGMENT.S_SHIFT) & 1,
    l: (a >> SEGMENT.L_SHIFT) & 1,
    g: (a >> SEGMENT.G_SHIFT) & 1,
    avl: (a >> SEGMENT.AVL_SHIFT) & 1,
    unusable: present ? 0 : 1,
  };
}

function encodeTable(v: DataView, at: number, t: DescriptorTable): void {
  v.setUint16(at, 0, true);
  v.setUint16(at + 2, 0, true);
  v.setUint16(at + 4, 0, true);
  v.setUint16(at + TABLE.LIMIT, t.limit, true);
  v.setBigUint64(at + TABLE.BASE, t.base, true);
}

function decodeTable(v: DataView, at: number): DescriptorTable {
  return { base: v.getBigUint64(at + TABLE.BASE, true), limit: v.getUint16(at + TABLE.LIMIT, true) };
}

/**
 * Writes `s` as the {@linkcode SREG_NAMES} values into `out` (17 × 16 bytes). The interrupt bitmap has no
 * WHP register (a CPL3 guest with IF=0 never has external interrupts pending) and is not written.
 *
 * @example
 * ```ts
 * import { emptySregs } from "../../format/sregs.ts";
 * import { decodeSregs, encodeSregs, SREG_NAMES } from "./registers.ts";
 * const s = emptySregs();
 * s.cr3 = 0x5000n;
 * const out = new Uint8Array(SREG_NAMES.length * 16);
 * encodeSregs(s, out);
 * console.log(decodeSregs(out).cr3); // 20480n
 * ```
 */
export function encodeSregs(s: Sregs, out: Uint8Array): void {
  checkSize(out, SREG_NAMES.length);
  out.fill(0, 0, SREG_NAMES.length * REGISTER_VALUE.SIZE);
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const at = (i: number) => i * REGISTER_VALUE.SIZE;
  const segments = [s.cs, s.ds, s.es, s.fs, s.gs, s.ss, s.tr, s.ldt];
  segments.forEach((seg, i) => encodeSegment(v, at(i), seg));
  encodeTable(v, at(8), s.gdt);
  encodeTable(v, at(9), s.idt);
  [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apicBase].forEach((x, i) =>
    v.setBigUint64(at(10 + i), x, true)
  );
}

/**
 * Reads the {@linkcode SREG_NAMES} values back into `Sregs` (interrupt bitmap zero).
 *
 * @example
 * ```ts
 * import { decodeSregs, SREG_NAMES } from "./registers.ts";
 * console.log(decodeSregs(new Uint8Array(SREG_NAMES.length * 16)).cs.unusable); // 1
 * ```
 */
export function decodeSregs(bytes: Uint8Array): Sregs {
  checkSize(bytes, SREG_NAMES.length);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = (i: number) => i * REGISTER_VALUE.SIZE;
  const u64 = (i: number) => v.getBigUint64(at(i), true);
  return {
    cs: decodeSegment(v, at(0)),
    ds: decodeSegment(v, at(1)),
    es: decodeSegment(v, at(2)),
    fs: decodeSegment(v, at(3)),
    gs: decodeSegment(v, at(4)),
    ss: decodeSegment(v, at(5)),
    tr: decodeSegment(v, at(6)),
    ldt: decodeSegment(v, at(7)),
    gdt: decodeTable(v, at(8)),
    idt: decodeTable(v, at(9)),
    cr0: u64(10),
    cr2: u64(11),
    cr3: u64(12),
    cr4: u64(13),
    cr8: u64(14),
    efer: u64(15),
    apicBase: u64(16),
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

/**
 * Writes general-purpose registers as the {@linkcode GP_NAMES} values (18 × 16 bytes).
 *
 * @example
 * ```ts
 * import { REGISTER_NAMES } from "../backend/backend.ts";
 * import { decodeRegisters, encodeRegisters } from "./registers.ts";
 * const r = Object.fromEntries(REGISTER_NAMES.map((n, i) => [n, BigInt(i)])) as never;
 * const out = new Uint8Array(18 * 16);
 * encodeRegisters(r, out);
 * console.log(decodeRegisters(out).rflags); // 17n
 * ```
 */
export function encodeRegisters(r: Registers, out: Uint8Array): void {
  checkSize(out, GP_NAMES.length);
  out.fill(0, 0, GP_NAMES.length * REGISTER_VALUE.SIZE);
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  REGISTER_NAMES.forEach((name, i) => v.setBigUint64(i * REGISTER_VALUE.SIZE, r[name], true));
}

/**
 * Reads the {@linkcode GP_NAMES} values into `Registers`.
 *
 * @example
 * ```ts
 * import { decodeRegisters } from "./registers.ts";
 * console.log(decodeRegisters(new Uint8Array(18 * 16)).rip); // 0n
 * ```
 */
export function decodeRegisters(bytes: Uint8Array): Registers {
  checkSize(bytes, GP_NAMES.length);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Object.fromEntries(
    REGISTER_NAMES.map((name, i) => [name, v.getBigUint64(i * REGISTER_VALUE.SIZE, true)]),
  ) as Registers;
}

function checkSize(bytes: Uint8Array, count: number): void {
  if (bytes.byteLength < count * REGISTER_VALUE.SIZE) {
    throw new RangeError(
      `${count} register values need ${count * REGISTER_VALUE.SIZE} bytes, got ${bytes.byteLength}`,
    );
  }
}
