/**
 * Special registers between snapvm's neutral form (the snapshot format's `Sregs`) and KVM's
 * `struct kvm_sregs` (312 B; offsets in `ffi/linux/kvm.ts`).
 *
 * @module
 */
import { type Segment, SEGMENT_FLAGS, SEGMENT_NAMES, type Sregs } from "../../format/sregs.ts";
import { DTABLE, SEGMENT, SREGS } from "../../ffi/linux/kvm.ts";

const SEGMENT_AT: Record<typeof SEGMENT_NAMES[number], number> = {
  cs: SREGS.CS,
  ds: SREGS.DS,
  es: SREGS.ES,
  fs: SREGS.FS,
  gs: SREGS.GS,
  ss: SREGS.SS,
  tr: SREGS.TR,
  ldt: SREGS.LDT,
};
const CONTROL = [
  ["cr0", SREGS.CR0],
  ["cr2", SREGS.CR2],
  ["cr3", SREGS.CR3],
  ["cr4", SREGS.CR4],
  ["cr8", SREGS.CR8],
  ["efer", SREGS.EFER],
  ["apicBase", SREGS.APIC_BASE],
] as const;

/**
 * Reads a `struct kvm_sregs` as filled by `KVM_GET_SREGS`. The kernel's padding bytes are ignored.
 *
 * @example
 * ```ts
 * import { sregsFromKvm } from "./sregs.ts";
 * const raw = new Uint8Array(312);
 * new DataView(raw.buffer).setBigUint64(240, 0x5000n, true); // cr3
 * console.log(sregsFromKvm(raw).cr3); // 20480n
 * ```
 */
export function sregsFromKvm(bytes: Uint8Array): Sregs {
  if (bytes.byteLength < SREGS.SIZE) {
    throw new RangeError(`struct kvm_sregs needs ${SREGS.SIZE} bytes, got ${bytes.byteLength}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, SREGS.SIZE);
  const segment = (at: number): Segment => {
    const s = {
      base: v.getBigUint64(at + SEGMENT.BASE, true),
      limit: v.getUint32(at + SEGMENT.LIMIT, true),
      selector: v.getUint16(at + SEGMENT.SELECTOR, true),
    } as Segment;
    SEGMENT_FLAGS.forEach(([flag], i) => s[flag] = v.getUint8(at + SEGMENT.FLAGS + i));
    return s;
  };
  const u64 = (at: number) => v.getBigUint64(at, true);
  const out = {} as Sregs;
  for (const name of SEGMENT_NAMES) out[name] = segment(SEGMENT_AT[name]);
  out.gdt = { base: u64(SREGS.GDT + DTABLE.BASE), limit: v.getUint16(SREGS.GDT + DTABLE.LIMIT, true) };
  out.idt = { base: u64(SREGS.IDT + DTABLE.BASE), limit: v.getUint16(SREGS.IDT + DTABLE.LIMIT, true) };
  for (const [name, at] of CONTROL) out[name] = u64(at);
  out.interruptBitmap = [0, 1, 2, 3].map((i) =>
    u64(SREGS.INTERRUPT_BITMAP + i * 8)
  ) as Sregs["interruptBitmap"];
  return out;
}

/**
 * Writes registers as a `struct kvm_sregs` for `KVM_SET_SREGS`; padding is zero. Each field must fit its
 * kernel width (`RangeError` otherwise).
 *
 * @example
 * ```ts
 * import { emptySregs } from "../../format/sregs.ts";
 * import { sregsFromKvm, sregsToKvm } from "./sregs.ts";
 * const s = emptySregs();
 * s.efer = 0xd00n;
 * console.log(sregsFromKvm(sregsToKvm(s)).efer); // 3328n
 * ```
 */
export function sregsToKvm(sregs: Sregs, target: Uint8Array = new Uint8Array(SREGS.SIZE)): Uint8Array {
  if (target.byteLength < SREGS.SIZE) {
    throw new RangeError(`struct kvm_sregs needs ${SREGS.SIZE} bytes, got ${target.byteLength}`);
  }
  // Zero first: the structure has padding that must not carry stale bytes from a reused buffer.
  target.fill(0, 0, SREGS.SIZE);
  const v = new DataView(target.buffer, target.byteOffset, SREGS.SIZE);
  for (const name of SEGMENT_NAMES) {
    const at = SEGMENT_AT[name], s = sregs[name];
    v.setBigUint64(at + SEGMENT.BASE, BigInt.asUintN(64, s.base), true);
    v.setUint32(at + SEGMENT.LIMIT, fit(s.limit, 0xffff_ffff, `${name}.limit`), true);
    v.setUint16(at + SEGMENT.SELECTOR, fit(s.selector, 0xffff, `${name}.selector`), true);
    SEGMENT_FLAGS.forEach(([flag], i) =>
      v.setUint8(at + SEGMENT.FLAGS + i, fit(s[flag], 0xff, `${name}.${flag}`))
    );
  }
  for (const [name, at] of [["gdt", SREGS.GDT], ["idt", SREGS.IDT]] as const) {
    v.setBigUint64(at + DTABLE.BASE, BigInt.asUintN(64, sregs[name].base), true);
    v.setUint16(at + DTABLE.LIMIT, fit(sregs[name].limit, 0xffff, `${name}.limit`), true);
  }
  for (const [name, at] of CONTROL) v.setBigUint64(at, BigInt.asUintN(64, sregs[name]), true);
  sregs.interruptBitmap.forEach((w, i) =>
    v.setBigUint64(SREGS.INTERRUPT_BITMAP + i * 8, BigInt.asUintN(64, w), true)
  );
  return target;
}

function fit(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`sregs.${field} is ${value}, which does not fit struct kvm_sregs (0..${max})`);
  }
  return value;
}
