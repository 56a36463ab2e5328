/**
 * The snapshot loader's checks on top of the file codec's: the exact memory layout, the ABI-critical special
 * registers, and the function table in the blob. Everything here reads hostile bytes.
 *
 * @module
 */
import { SnapshotFormatError } from "../../format/errors.ts";
import type { ParsedSnapshot } from "../../format/hls.ts";
import { SREGS } from "../../ffi/linux/kvm.ts";
import {
  CR0,
  CR4,
  EFER,
  FUNC_TABLE_SIZE,
  GDT_ADDR,
  GDT_ENTRIES,
  IDT_ADDR,
  IDT_VECTORS,
  IMAGE_BASE,
  PAGE,
  PML4_ADDR,
  SEL_TSS,
  SEL_USER_CODE,
  SEL_USER_DATA,
  TSS_ADDR,
  TSS_LIMIT,
} from "../machine/abi.ts";
import { ProtocolError, Reader } from "../machine/codec.ts";
import { readFunctionList } from "../machine/functions.ts";
import { CONFIG_LIMITS } from "../config.ts";
import { computeLayout, type Layout } from "../machine/layout.ts";
import type { GuestFunctionInfo } from "../types.ts";

/** The layout a header describes, which must match snapvm's layout exactly. */
export function layoutOf(p: ParsedSnapshot): Layout {
  const h = p.header;
  const bad = (field: string, found: number | bigint, expected: string): never => {
    throw new SnapshotFormatError("InvalidField", { field, found, expected });
  };
  for (
    const [field, value] of [["input_data_size", h.inputDataSize], [
      "output_data_size",
      h.outputDataSize,
    ]] as const
  ) {
    const [min, max] = CONFIG_LIMITS.inputDataSize;
    if (value % PAGE !== 0 || value < min || value > max) {
      bad(field, value, `a multiple of ${PAGE} from ${min} to ${max}`);
    }
  }
  const stackSize = h.scratchSize - h.inputDataSize - h.outputDataSize;
  const [smin, smax] = CONFIG_LIMITS.stackSize;
  if (stackSize < smin || stackSize > smax) {
    bad("scratch_size", h.scratchSize, `stack (scratch_size - buffers) from ${smin} to ${smax}`);
  }
  let layout: Layout;
  try {
    layout = computeLayout({
      imageEnd: IMAGE_BASE + h.codeSize,
      heapSize: h.heapSize,
      stackSize,
      inputDataSize: h.inputDataSize,
      outputDataSize: h.outputDataSize,
    });
  } catch (e) {
    return bad("memory_size", h.memorySize, (e as Error).message);
  }
  if (layout.persistentSize !== h.memorySize) bad("memory_size", h.memorySize, `${layout.persistentSize}`);
  if (layout.stackTop !== h.stackTopGva) bad("stack_top_gva", h.stackTopGva, `${layout.stackTop}`);
  if (layout.ptPages * PAGE !== h.ptSize) {
    bad("pt_size", h.ptSize, `${layout.ptPages * PAGE} for this layout`);
  }
  return layout;
}

/** Parses the function table in a blob (hostile bytes: any problem is a SnapshotFormatError). */
export function readFunctionTable(table: Uint8Array): ReadonlyMap<string, GuestFunctionInfo> {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const len = view.getUint32(0, true);
  if (len > FUNC_TABLE_SIZE - 4) {
    throw new SnapshotFormatError("InvalidField", {
      field: "function table length",
      found: len,
      expected: `at most ${FUNC_TABLE_SIZE - 4}`,
    });
  }
  const bytes = table.subarray(4, 4 + len);
  try {
    const r = new Reader(bytes, new DataView(bytes.buffer, bytes.byteOffset, len), len);
    const fns = readFunctionList(r);
    if (r.pos !== len) throw new ProtocolError(`${len - r.pos} bytes follow the last function`);
    return fns;
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    throw new SnapshotFormatError("InvalidField", {
      field: "function table",
      found: e.message,
      expected: "a valid list",
    });
  }
}

/**
 * `struct kvm_sregs` from the file's 952-byte sregs section (119 × u64, already range-checked by the
 * parser): copies the u64 fields and narrows the others, without going through bigint objects, because this
 * runs on every load.
 */
export function kvmSregsFromFile(file: Uint8Array): Uint8Array {
  const src = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out = new Uint8Array(312);
  const dst = new DataView(out.buffer);
  const copy64 = (from: number, to: number) => out.set(file.subarray(from, from + 8), to);
  for (let i = 0; i < 8; i++) {
    const f = i * 13 * 8, k = i * 24;
    copy64(f, k); // base
    dst.setUint32(k + 8, src.getUint32(f + 8, true), true); // limit
    dst.setUint16(k + 12, src.getUint32(f + 16, true), true); // selector
    for (let j = 0; j < 9; j++) dst.setUint8(k + 14 + j, src.getUint32(f + 24 + j * 8, true)); // type..unusable
  }
  const tables = 8 * 13 * 8;
  copy64(tables, 192);
  dst.setUint16(200, src.getUint32(tables + 8, true), true);
  copy64(tables + 16, 208);
  dst.setUint16(216, src.getUint32(tables + 24, true), true);
  for (let i = 0; i < 11; i++) copy64(tables + 32 + i * 8, 224 + i * 8); // cr0..apic_base, interrupt_bitmap
  return out;
}

/**
 * Checks the special registers that decide the guest's privilege and what it can reach against the ABI
 * (docs/ABI.md): control registers, descriptor tables, TSS, and CPL3 code and stack segments. The header hash
 * proves nothing about who wrote a file, so without this a crafted file could start its guest at CPL0 with
 * its own page tables. Segment fields the guest may legitimately change (data selectors, FS/GS bases, CR2)
 * are not compared.
 */
export function checkAbiSregs(kvm: Uint8Array): Uint8Array {
  const v = new DataView(kvm.buffer, kvm.byteOffset, kvm.byteLength);
  const expect = (field: string, found: bigint | number, wanted: bigint | number) => {
    if (found !== wanted) {
      throw new SnapshotFormatError("InvalidField", {
        field: `sregs.${field}`,
        found: typeof found === "bigint" ? `0x${found.toString(16)}` : found,
        expected: `${typeof wanted === "bigint" ? `0x${wanted.toString(16)}` : wanted} (docs/ABI.md)`,
      });
    }
  };
  expect("cr0", v.getBigUint64(SREGS.CR0, true), CR0);
  expect("cr3", v.getBigUint64(SREGS.CR3, true), BigInt(PML4_ADDR));
  expect("cr4", v.getBigUint64(SREGS.CR4, true), CR4);
  expect("efer", v.getBigUint64(SREGS.EFER, true), EFER);
  expect("gdt.base", v.getBigUint64(SREGS.GDT, true), BigInt(GDT_ADDR));
  expect("gdt.limit", v.getUint16(SREGS.GDT + 8, true), GDT_ENTRIES * 8 - 1);
  expect("idt.base", v.getBigUint64(SREGS.IDT, true), BigInt(IDT_ADDR));
  expect("idt.limit", v.getUint16(SREGS.IDT + 8, true), IDT_VECTORS * 16 - 1);
  expect("tr.base", v.getBigUint64(SREGS.TR, true), BigInt(TSS_ADDR));
  expect("tr.limit", v.getUint32(SREGS.TR + 8, true), TSS_LIMIT);
  expect("tr.selector", v.getUint16(SREGS.TR + 12, true), SEL_TSS);
  expect("cs.selector", v.getUint16(SREGS.CS + 12, true), SEL_USER_CODE);
  expect("cs.dpl", v.getUint8(SREGS.CS + 16), 3);
  expect("cs.l", v.getUint8(SREGS.CS + 19), 1);
  expect("ss.selector", v.getUint16(SREGS.SS + 12, true), SEL_USER_DATA);
  expect("ss.dpl", v.getUint8(SREGS.SS + 16), 3);
  return kvm;
}
