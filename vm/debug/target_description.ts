/**
 * The x86-64 register set as gdb numbers it, and the target description XML that tells gdb so
 * (`qXfer:features:read:target.xml`). Feature names, register names, sizes and order follow gdb's
 * `features/i386/64bit-core.xml`, `64bit-sse.xml` and `64bit-segments.xml`, so the `g` packet layout is
 * the one gdb expects of an amd64 target: 16 GPRs, rip, eflags, six selectors, st0..st7, the eight x87
 * control registers, xmm0..xmm15, mxcsr, fs_base, gs_base (59 registers, regnums 0..58).
 *
 * The x87/SSE values are taken from and stored into the FXSAVE image, with the same conversions gdb
 * applies to FXSAVE data of a native amd64 process (`i387-tdep.c`, `amd64-tdep.c`): the full 16-bit tag
 * word is derived from the abridged one, fiseg/foseg are the upper halves of the 64-bit FPU pointers.
 *
 * @module
 */
import { FXSAVE, RFLAGS_USER_MASK, X86_REGISTER_NAMES, type X86Registers } from "./registers.ts";

/** One register of the description. */
export interface GdbRegister {
  /** gdb's name. */
  readonly name: string;
  /** Size in bits. */
  readonly bits: number;
  /** gdb type name. */
  readonly type: string;
  /** gdb register group, when not the default. */
  readonly group?: "float" | "vector";
  /** The feature it belongs to. */
  readonly feature: "org.gnu.gdb.i386.core" | "org.gnu.gdb.i386.sse" | "org.gnu.gdb.i386.segments";
}

const CORE = "org.gnu.gdb.i386.core", SSE = "org.gnu.gdb.i386.sse", SEGMENTS = "org.gnu.gdb.i386.segments";
// gdb's amd64 numbering: the 16 general registers, RIP, EFLAGS, then the six selectors.
const GPRS = X86_REGISTER_NAMES.slice(0, 16);
const SELECTORS = X86_REGISTER_NAMES.slice(18, 24);
const X87_CONTROL = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"] as const;

/** gdb register numbers of the registers the stub names explicitly. */
export const GDB_REGNUM = {
  RBP: 6,
  RSP: 7,
  RIP: 16,
  EFLAGS: 17,
  CS: 18,
  ST0: 24,
  FCTRL: 32,
  XMM0: 40,
  MXCSR: 56,
  FS_BASE: 57,
  GS_BASE: 58,
} as const;

/** The registers in gdb's order: the index is the gdb register number. */
export const GDB_REGISTERS: readonly GdbRegister[] = [
  ...GPRS.map((name) => ({
    name,
    bits: 64,
    type: name === "rbp" || name === "rsp" ? "data_ptr" : "int64",
    feature: CORE,
  } as const)),
  { name: "rip", bits: 64, type: "code_ptr", feature: CORE },
  { name: "eflags", bits: 32, type: "i386_eflags", feature: CORE },
  ...SELECTORS.map((name) => ({ name, bits: 32, type: "int32", feature: CORE } as const)),
  ...Array.from(
    { length: 8 },
    (_, i) => ({ name: `st${i}`, bits: 80, type: "i387_ext", feature: CORE } as const),
  ),
  ...X87_CONTROL.map((name) => ({ name, bits: 32, type: "int", group: "float", feature: CORE } as const)),
  ...Array.from(
    { length: 16 },
    (_, i) => ({ name: `xmm${i}`, bits: 128, type: "vec128", feature: SSE } as const),
  ),
  { name: "mxcsr", bits: 32, type: "i386_mxcsr", group: "vector", feature: SSE },
  { name: "fs_base", bits: 64, type: "int", feature: SEGMENTS },
  { name: "gs_base", bits: 64, type: "int", feature: SEGMENTS },
];

function field(name: string, bit: number): string {
  return `      <field name="${name}" start="${bit}" end="${bit}"/>`;
}

function buildXml(): string {
  const eflags = [
    ["CF", 0],
    ["", 1],
    ["PF", 2],
    ["AF", 4],
    ["ZF", 6],
    ["SF", 7],
    ["TF", 8],
    ["IF", 9],
    ["DF", 10],
    ["OF", 11],
    ["NT", 14],
    ["RF", 16],
    ["VM", 17],
    ["AC", 18],
    ["VIF", 19],
    ["VIP", 20],
    ["ID", 21],
  ] as const;
  const mxcsr = [
    ["IE", 0],
    ["DE", 1],
    ["ZE", 2],
    ["OE", 3],
    ["UE", 4],
    ["PE", 5],
    ["DAZ", 6],
    ["IM", 7],
    ["DM", 8],
    ["ZM", 9],
    ["OM", 10],
    ["UM", 11],
    ["PM", 12],
    ["FZ", 15],
  ] as const;
  const vectors = [
    ["v4f", "ieee_single", 4, "v4_float"],
    ["v2d", "ieee_double", 2, "v2_double"],
    ["v16i8", "int8", 16, "v16_int8"],
    ["v8i16", "int16", 8, "v8_int16"],
    ["v4i32", "int32", 4, "v4_int32"],
    ["v2i64", "int64", 2, "v2_int64"],
  ] as const;
  const types: Record<string, string[]> = {
    [CORE]: [`    <flags id="i386_eflags" size="4">`, ...eflags.map(([n, b]) => field(n, b)), `    </flags>`],
    [SSE]: [
      ...vectors.map(([id, type, count]) => `    <vector id="${id}" type="${type}" count="${count}"/>`),
      `    <union id="vec128">`,
      ...vectors.map(([id, , , name]) => `      <field name="${name}" type="${id}"/>`),
      `      <field name="uint128" type="uint128"/>`,
      `    </union>`,
      `    <flags id="i386_mxcsr" size="4">`,
      ...mxcsr.map(([n, b]) => field(n, b)),
      `    </flags>`,
    ],
    [SEGMENTS]: [],
  };
  const lines = [
    `<?xml version="1.0"?>`,
    `<!DOCTYPE target SYSTEM "gdb-target.dtd">`,
    `<target version="1.0">`,
    `  <architecture>i386:x86-64</architecture>`,
  ];
  for (const feature of [CORE, SSE, SEGMENTS]) {
    lines.push(`  <feature name="${feature}">`, ...types[feature]);
    GDB_REGISTERS.forEach((r, regnum) => {
      if (r.feature !== feature) return;
      const group = r.group ? ` group="${r.group}"` : "";
      lines.push(
        `    <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${regnum}"${group}/>`,
      );
    });
    lines.push(`  </feature>`);
  }
  lines.push(`</target>`, "");
  return lines.join("\n");
}

/**
 * The target description gdb reads with `qXfer:features:read:target.xml`.
 *
 * @example
 * ```ts
 * import { TARGET_XML } from "./target_description.ts";
 * console.log(TARGET_XML.includes('<reg name="rip"')); // true
 * ```
 */
export const TARGET_XML: string = buildXml();

/**
 * Size in bytes of the value of gdb register `regnum`.
 *
 * @example
 * ```ts
 * import { GDB_REGNUM, registerSize } from "./target_description.ts";
 * console.log(registerSize(GDB_REGNUM.XMM0)); // 16
 * ```
 */
export function registerSize(regnum: number): number {
  return GDB_REGISTERS[regnum].bits / 8;
}

function u64le(value: bigint, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let v = value;
  for (let i = 0; i < bytes; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function fromLe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** x87 tag values: valid, zero, special (NaN, infinity, denormal, unsupported), empty. */
const TAG_VALID = 0, TAG_ZERO = 1, TAG_SPECIAL = 2, TAG_EMPTY = 3;

/** Classifies one 80-bit register (Intel SDM Vol. 1 §8.1.7). */
function x87Tag(raw: Uint8Array): number {
  const exponent = (raw[8] | (raw[9] << 8)) & 0x7fff;
  const integerBit = (raw[7] & 0x80) !== 0;
  if (exponent === 0x7fff) return TAG_SPECIAL;
  if (exponent === 0) return raw.subarray(0, 8).every((b) => b === 0) ? TAG_ZERO : TAG_SPECIAL;
  return integerBit ? TAG_VALID : TAG_SPECIAL;
}

/**
 * The full x87 tag word (two bits per physical register) from an FXSAVE image, whose tag byte only says
 * empty or not. FXSAVE stores the registers in stack order (ST0 first), the tags by physical register.
 *
 * @example
 * ```ts
 * import { fullTagWord } from "./target_description.ts";
 * console.log(fullTagWord(new Uint8Array(512)).toString(16)); // "ffff": all empty
 * ```
 */
export function fullTagWord(fxsave: Uint8Array): number {
  const fsw = fxsave[FXSAVE.FSW] | (fxsave[FXSAVE.FSW + 1] << 8);
  const top = (fsw >> 11) & 7;
  let word = 0;
  for (let phys = 0; phys < 8; phys++) {
    let tag = TAG_EMPTY;
    if ((fxsave[FXSAVE.FTW] & (1 << phys)) !== 0) {
      const st = (phys - top + 8) & 7;
      tag = x87Tag(fxsave.subarray(FXSAVE.ST0 + st * 16, FXSAVE.ST0 + st * 16 + 10));
    }
    word |= tag << (2 * phys);
  }
  return word;
}

/**
 * The abridged FXSAVE tag byte for a full tag word: a physical register is in use unless its tag is 3.
 *
 * @example
 * ```ts
 * import { abridgedTag } from "./target_description.ts";
 * console.log(abridgedTag(0xfffc)); // 1
 * ```
 */
export function abridgedTag(tagWord: number): number {
  let byte = 0;
  for (let phys = 0; phys < 8; phys++) if (((tagWord >> (2 * phys)) & 3) !== TAG_EMPTY) byte |= 1 << phys;
  return byte;
}

/** Where an x87 control register lives in the FXSAVE image, and how many bytes it has there. */
const X87_CONTROL_SLOTS: Readonly<Record<(typeof X87_CONTROL)[number], readonly [number, number]>> = {
  fctrl: [FXSAVE.FCW, 2],
  fstat: [FXSAVE.FSW, 2],
  ftag: [FXSAVE.FTW, 1], // converted, see fullTagWord
  fiseg: [FXSAVE.FIP + 4, 4],
  fioff: [FXSAVE.FIP, 4],
  foseg: [FXSAVE.FDP + 4, 4],
  fooff: [FXSAVE.FDP, 4],
  fop: [FXSAVE.FOP, 2],
};

/**
 * The value of gdb register `regnum` (little-endian, {@linkcode registerSize} bytes), or `undefined` when
 * it is unavailable (x87/SSE registers without an FXSAVE image).
 *
 * @example
 * ```ts
 * import { emptyRegisters } from "./registers.ts";
 * import { GDB_REGNUM, readGdbRegister } from "./target_description.ts";
 * const regs = { ...emptyRegisters(), rip: 0x200000n };
 * console.log(readGdbRegister(regs, GDB_REGNUM.RIP)); // Uint8Array(8) [0, 0, 32, 0, 0, 0, 0, 0]
 * ```
 */
export function readGdbRegister(regs: X86Registers, regnum: number): Uint8Array | undefined {
  const r = GDB_REGISTERS[regnum];
  if (r === undefined) {
    throw new RangeError(`gdb register ${regnum} does not exist (0..${GDB_REGISTERS.length - 1})`);
  }
  if (regnum < GDB_REGNUM.RIP) return u64le(regs[GPRS[regnum]], 8);
  if (regnum === GDB_REGNUM.RIP) return u64le(regs.rip, 8);
  if (regnum === GDB_REGNUM.EFLAGS) return u64le(regs.rflags & 0xffff_ffffn, 4);
  if (regnum < GDB_REGNUM.ST0) return u64le(regs[SELECTORS[regnum - GDB_REGNUM.CS]] & 0xffffn, 4);
  if (regnum === GDB_REGNUM.FS_BASE) return u64le(regs.fsBase, 8);
  if (regnum === GDB_REGNUM.GS_BASE) return u64le(regs.gsBase, 8);
  const fx = regs.fxsave;
  if (fx === undefined || fx.length < FXSAVE.SIZE) return undefined;
  if (regnum < GDB_REGNUM.FCTRL) {
    const off = FXSAVE.ST0 + (regnum - GDB_REGNUM.ST0) * 16;
    return fx.slice(off, off + 10);
  }
  if (regnum < GDB_REGNUM.XMM0) {
    const name = X87_CONTROL[regnum - GDB_REGNUM.FCTRL];
    if (name === "ftag") return u64le(BigInt(fullTagWord(fx)), 4);
    const [off, size] = X87_CONTROL_SLOTS[name];
    let v = fromLe(fx.subarray(off, off + size));
    if (name === "fop") v &= 0x7ffn;
    return u64le(v, 4);
  }
  if (regnum < GDB_REGNUM.MXCSR) {
    const off = FXSAVE.XMM0 + (regnum - GDB_REGNUM.XMM0) * 16;
    return fx.slice(off, off + 16);
  }
  return fx.slice(FXSAVE.MXCSR, FXSAVE.MXCSR + 4);
}

/**
 * Stores a new value of gdb register `regnum` into `regs` (replacing `regs.fxsave` by a modified copy for
 * x87/SSE registers). Returns false, changing nothing, for a write the stub refuses: a different segment
 * selector (the guest must stay at CPL3 with the host's descriptors) or an x87/SSE register without an
 * FXSAVE image. RFLAGS bits outside {@linkcode RFLAGS_USER_MASK} keep their values.
 *
 * @example
 * ```ts
 * import { emptyRegisters } from "./registers.ts";
 * import { GDB_REGNUM, writeGdbRegister } from "./target_description.ts";
 * const regs = emptyRegisters();
 * writeGdbRegister(regs, GDB_REGNUM.RIP, new Uint8Array([0, 0x10, 0x20, 0, 0, 0, 0, 0]));
 * console.log(regs.rip.toString(16)); // "201000"
 * ```
 */
export function writeGdbRegister(regs: X86Registers, regnum: number, value: Uint8Array): boolean {
  const r = GDB_REGISTERS[regnum];
  if (r === undefined) {
    throw new RangeError(`gdb register ${regnum} does not exist (0..${GDB_REGISTERS.length - 1})`);
  }
  if (value.length !== r.bits / 8) {
    throw new RangeError(`gdb register ${r.name} takes ${r.bits / 8} bytes, got ${value.length}`);
  }
  const v = fromLe(value);
  if (regnum < GDB_REGNUM.RIP) {
    regs[GPRS[regnum]] = v;
  } else if (regnum === GDB_REGNUM.RIP) {
    regs.rip = v;
  } else if (regnum === GDB_REGNUM.EFLAGS) {
    regs.rflags = (regs.rflags & ~RFLAGS_USER_MASK) | (v & RFLAGS_USER_MASK);
  } else if (regnum < GDB_REGNUM.ST0) {
    if (v !== (regs[SELECTORS[regnum - GDB_REGNUM.CS]] & 0xffffn)) return false;
  } else if (regnum === GDB_REGNUM.FS_BASE) {
    regs.fsBase = v;
  } else if (regnum === GDB_REGNUM.GS_BASE) {
    regs.gsBase = v;
  } else {
    if (regs.fxsave === undefined || regs.fxsave.length < FXSAVE.SIZE) return false;
    const fx = regs.fxsave.slice();
    if (regnum < GDB_REGNUM.FCTRL) {
      fx.set(value, FXSAVE.ST0 + (regnum - GDB_REGNUM.ST0) * 16);
    } else if (regnum < GDB_REGNUM.XMM0) {
      const name = X87_CONTROL[regnum - GDB_REGNUM.FCTRL];
      const [off, size] = X87_CONTROL_SLOTS[name];
      if (name === "ftag") {
        fx[off] = abridgedTag(Number(v & 0xffffn));
      } else if (name === "fop") {
        const old = fx[off] | (fx[off + 1] << 8);
        const fop = (old & ~0x7ff) | Number(v & 0x7ffn);
        fx[off] = fop & 0xff;
        fx[off + 1] = fop >> 8;
      } else {
        fx.set(value.subarray(0, size), off);
      }
    } else if (regnum < GDB_REGNUM.MXCSR) {
      fx.set(value, FXSAVE.XMM0 + (regnum - GDB_REGNUM.XMM0) * 16);
    } else {
      fx.set(value, FXSAVE.MXCSR);
    }
    regs.fxsave = fx;
  }
  return true;
}
