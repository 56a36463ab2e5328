/**
 * ELF64 guest binary parsing. The binary is hostile input: every field is checked against the file length
 * and explicit limits before use, and any problem is a {@linkcode GuestBinaryError} naming the field.
 *
 * @module
 */
import { IMAGE_BASE, PAGE } from "./abi.ts";
import { GuestBinaryError } from "../errors.ts";

/** Largest guest image (sum of the loaded segments' span). */
export const MAX_IMAGE_SIZE = 64 * 1024 * 1024;
/** Most program headers accepted. */
export const MAX_PROGRAM_HEADERS = 64;

/** Segment permission bits (ELF `p_flags`). */
export const PF_X = 1, PF_W = 2, PF_R = 4;

/** One `PT_LOAD` segment. */
export interface ElfSegment {
  /** Guest address of the segment. */
  readonly vaddr: number;
  /** Bytes in memory (≥ fileSize; the rest is zero). */
  readonly memSize: number;
  /** Offset of the segment's bytes in the file. */
  readonly fileOffset: number;
  /** Bytes taken from the file. */
  readonly fileSize: number;
  /** `PF_R | PF_W | PF_X` bits. */
  readonly flags: number;
}

/** A parsed, validated guest binary. */
export interface ElfImage {
  /** Entry point (`e_entry`), inside an executable segment. */
  readonly entry: number;
  /** Loadable segments, sorted by address, not sharing pages. */
  readonly segments: readonly ElfSegment[];
  /** First byte past the last segment, page aligned. */
  readonly end: number;
}

function fail(detail: string): never {
  throw new GuestBinaryError(detail);
}

function u64(v: DataView, off: number, field: string): number {
  const x = v.getBigUint64(off, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${field} is 0x${x.toString(16)}, which is out of range`);
  return Number(x);
}

/**
 * Parses and validates an ELF64 x86-64 static executable linked at or above `IMAGE_BASE` (0x200000).
 *
 * @example
 * ```ts
 * import { parseElf } from "./elf.ts";
 * try {
 *   parseElf(new Uint8Array(16));
 * } catch (e) {
 *   console.log((e as Error).message); // "Cannot load guest binary: file is 16 bytes, ..."
 * }
 * ```
 */
export function parseElf(file: Uint8Array): ElfImage {
  if (file.length < 64) fail(`file is ${file.length} bytes, expected at least the 64-byte ELF header`);
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (v.getUint32(0, false) !== 0x7f454c46) fail("bad magic, expected \\x7fELF");
  if (file[4] !== 2) fail(`EI_CLASS is ${file[4]}, expected 2 (64-bit)`);
  if (file[5] !== 1) fail(`EI_DATA is ${file[5]}, expected 1 (little-endian)`);
  if (file[6] !== 1) fail(`EI_VERSION is ${file[6]}, expected 1`);
  const type = v.getUint16(16, true);
  if (type !== 2) fail(`e_type is ${type}, expected 2 (ET_EXEC, a static executable)`);
  const machine = v.getUint16(18, true);
  if (machine !== 62) fail(`e_machine is ${machine}, expected 62 (x86-64)`);
  const entry = u64(v, 24, "e_entry");
  const phoff = u64(v, 32, "e_phoff");
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  if (phentsize !== 56) fail(`e_phentsize is ${phentsize}, expected 56`);
  if (phnum === 0 || phnum > MAX_PROGRAM_HEADERS) {
    fail(`e_phnum is ${phnum}, expected 1 to ${MAX_PROGRAM_HEADERS}`);
  }
  if (phoff > file.length || phnum * 56 > file.length - phoff) {
    fail(
      `program headers (e_phoff ${phoff}, ${phnum} entries) extend past the end of the ${file.length}-byte file`,
    );
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * 56;
    const pType = v.getUint32(o, true);
    if (pType === 2 || pType === 3) {
      fail(`program header ${i} is PT_DYNAMIC/PT_INTERP: dynamic binaries are not supported`);
    }
    if (pType !== 1) continue;
    const flags = v.getUint32(o + 4, true);
    const fileOffset = u64(v, o + 8, `program header ${i} p_offset`);
    const vaddr = u64(v, o + 16, `program header ${i} p_vaddr`);
    const fileSize = u64(v, o + 32, `program header ${i} p_filesz`);
    const memSize = u64(v, o + 40, `program header ${i} p_memsz`);
    if (memSize === 0) continue;
    if (fileSize > memSize) fail(`program header ${i}: p_filesz ${fileSize} exceeds p_memsz ${memSize}`);
    if (fileOffset > file.length || fileSize > file.length - fileOffset) {
      fail(
        `program header ${i}: file range ${fileOffset}+${fileSize} extends past the end of the ${file.length}-byte file`,
      );
    }
    if (vaddr % PAGE !== 0) fail(`program header ${i}: p_vaddr 0x${vaddr.toString(16)} is not page aligned`);
    if (vaddr < IMAGE_BASE || memSize > MAX_IMAGE_SIZE || vaddr - IMAGE_BASE > MAX_IMAGE_SIZE - memSize) {
      fail(
        `program header ${i}: segment 0x${vaddr.toString(16)}+0x${memSize.toString(16)} lies outside ` +
          `0x${IMAGE_BASE.toString(16)}..0x${(IMAGE_BASE + MAX_IMAGE_SIZE).toString(16)}`,
      );
    }
    if ((flags & (PF_W | PF_X)) === (PF_W | PF_X)) {
      fail(`program header ${i}: segment is both writable and executable`);
    }
    segments.push({ vaddr, memSize, fileOffset, fileSize, flags });
  }
  if (segments.length === 0) fail("no PT_LOAD segment");
  segments.sort((a, b) => a.vaddr - b.vaddr);
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1];
    const prevEnd = Math.ceil((prev.vaddr + prev.memSize) / PAGE) * PAGE;
    if (segments[i].vaddr < prevEnd) {
      fail(
        `segments at 0x${prev.vaddr.toString(16)} and 0x${
          segments[i].vaddr.toString(16)
        } overlap or share a page`,
      );
    }
  }
  const last = segments[segments.length - 1];
  const end = Math.ceil((last.vaddr + last.memSize) / PAGE) * PAGE;
  const inExec = segments.some((s) => (s.flags & PF_X) && entry >= s.vaddr && entry < s.vaddr + s.memSize);
  if (!inExec) fail(`e_entry 0x${entry.toString(16)} is not inside an executable segment`);
  return { entry, segments, end };
}
