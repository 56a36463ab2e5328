/**
 * The special registers of the ABI (docs/ABI.md, "Segments and control registers"), in the neutral form of
 * the snapshot format, and the loader's check of a file's registers against them.
 *
 * Every entry into a guest (init, a restore, a sandbox made from a snapshot, a reused VM) sets exactly
 * these registers: nothing a file or an earlier tenant left in them survives. Snapshot files carry them
 * too (the format requires registers for Call snapshots), always in this canonical form.
 *
 * @module
 */
import { type Segment, SnapshotFormatError, type Sregs } from "../../format/mod.ts";
import {
  CR0,
  CR4,
  EFER,
  GDT_ADDR,
  GDT_ENTRIES,
  IDT_ADDR,
  IDT_VECTORS,
  PML4_ADDR,
  SEL_TSS,
  SEL_USER_CODE,
  SEL_USER_DATA,
  TSS_ADDR,
  TSS_LIMIT,
} from "./abi.ts";

/** `IA32_APIC_BASE` at reset: base 0xFEE00000, enabled, bootstrap processor. */
export const APIC_BASE = 0xfee00900n;

const flat = { base: 0n, limit: 0xffff_ffff, avl: 0, unusable: 0, present: 1, g: 1 };
const userData: Segment = { ...flat, selector: SEL_USER_DATA, type: 3, dpl: 3, db: 1, s: 1, l: 0 };

/**
 * Builds the ABI's special registers (a fresh object each time: backends may cache per object).
 *
 * @example
 * ```ts
 * import { abiSregs } from "./sregs.ts";
 * console.log(abiSregs().cs.selector); // 51
 * ```
 */
export function abiSregs(): Sregs {
  return {
    cs: { ...flat, selector: SEL_USER_CODE, type: 11, dpl: 3, db: 0, s: 1, l: 1 },
    ss: { ...userData },
    ds: { ...userData, selector: 0 },
    es: { ...userData, selector: 0 },
    fs: { ...userData, selector: 0 },
    gs: { ...userData, selector: 0 },
    tr: {
      base: BigInt(TSS_ADDR),
      limit: TSS_LIMIT,
      selector: SEL_TSS,
      type: 11,
      present: 1,
      dpl: 0,
      db: 0,
      s: 0,
      l: 0,
      g: 0,
      avl: 0,
      unusable: 0,
    },
    // The LDT as a vCPU comes out of reset: unused (no LDT selector is ever loaded).
    ldt: {
      base: 0n,
      limit: 0xffff,
      selector: 0,
      type: 2,
      present: 1,
      dpl: 0,
      db: 0,
      s: 0,
      l: 0,
      g: 0,
      avl: 0,
      unusable: 0,
    },
    gdt: { base: BigInt(GDT_ADDR), limit: GDT_ENTRIES * 8 - 1 },
    idt: { base: BigInt(IDT_ADDR), limit: IDT_VECTORS * 16 - 1 },
    cr0: CR0,
    cr2: 0n,
    cr3: BigInt(PML4_ADDR),
    cr4: CR4,
    cr8: 0n,
    efer: EFER,
    apicBase: APIC_BASE,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

/** The registers every sandbox starts with; never mutate it. */
export const ABI_SREGS: Sregs = Object.freeze(abiSregs());

/**
 * Data selectors a CPL3 guest can load itself: null (0–3), and the user data and code descriptors with any
 * RPL. Files may record any of them (the guest's state when the snapshot was taken); they are reset on load.
 */
const LOADABLE_DATA_SELECTORS = new Set([0, 1, 2, 3, 0x28, 0x29, 0x2a, 0x2b, 0x30, 0x31, 0x32, 0x33]);

/**
 * Checks a snapshot file's special registers against the ABI. A file's hashes prove nothing about who wrote
 * it, so every register is compared: control registers, descriptor tables, TR and LDTR, CS and SS down to
 * each attribute bit, CR8, the APIC base and the pending-interrupt bitmap. Only values the sandbox resets on
 * every entry anyway are tolerated: DS/ES/FS/GS with a selector a CPL3 guest can load, and CR2 (the last
 * page-fault address). The file's registers are never loaded into a vCPU: sandboxes get {@linkcode
 * ABI_SREGS}.
 *
 * @example
 * ```ts
 * import { abiSregs, checkAbiSregs } from "./sregs.ts";
 * checkAbiSregs(abiSregs()); // no error
 * ```
 */
export function checkAbiSregs(s: Sregs): void {
  const want = ABI_SREGS;
  const bad = (field: string, found: bigint | number, expected: bigint | number | string): never => {
    const show = (x: bigint | number | string) => typeof x === "bigint" ? `0x${x.toString(16)}` : x;
    throw new SnapshotFormatError("InvalidField", {
      field: `sregs.${field}`,
      found: show(found),
      expected: `${show(expected)} (docs/ABI.md)`,
    });
  };
  const same = (field: string, found: bigint | number, expected: bigint | number) => {
    if (found !== expected) bad(field, found, expected);
  };
  for (const [name, key, value] of FIXED_SEGMENT_VALUES) {
    const found = s[name][key];
    if (found !== value) bad(`${name}.${key}`, found, value);
  }
  for (const name of ["ds", "es", "fs", "gs"] as const) {
    if (!LOADABLE_DATA_SELECTORS.has(s[name].selector)) {
      bad(`${name}.selector`, s[name].selector, "a null, user data or user code selector");
    }
  }
  for (const name of ["gdt", "idt"] as const) {
    same(`${name}.base`, s[name].base, want[name].base);
    same(`${name}.limit`, s[name].limit, want[name].limit);
  }
  for (const name of ["cr0", "cr3", "cr4", "cr8", "efer", "apicBase"] as const) {
    same(name, s[name], want[name]);
  }
  s.interruptBitmap.forEach((w, i) => {
    if (w !== 0n) bad(`interrupt_bitmap[${i}]`, w, 0n);
  });
}

/**
 * Every value of the segments the ABI fixes whole, as `[segment, field, value]`, listed once: building the
 * list and the field names on every check made it ~3x slower (3.5 µs instead of 1.3 µs warm).
 */
const FIXED_SEGMENT_VALUES = (["cs", "ss", "tr", "ldt"] as const).flatMap((name) =>
  (Object.entries(ABI_SREGS[name]) as [keyof Segment, number | bigint][]).map(([key, value]) =>
    [name, key, value] as const
  )
);
