/**
 * Guest virtual memory seen from the host: a 4-level x86-64 page-table walk (4 KiB, 2 MiB and 1 GiB
 * pages) over guest-physical memory, reads and writes at guest virtual addresses, and the list of mapped
 * ranges a core dump records.
 *
 * The page tables live in guest memory, so the walk treats them as hostile: every table and entry is
 * bounds-checked through {@linkcode PhysicalMemory}, a walk has a fixed depth (so a table that points at
 * itself cannot loop), and enumerating all mappings stops at explicit limits. Problems are
 * {@linkcode GuestAddressError}s, never crashes. The walk only reads: it never sets accessed or dirty bits.
 *
 * Bit positions are from the Intel SDM, Vol. 3A, §4.5 ("4-level paging"), tables 4-14 to 4-20.
 *
 * @module
 */
import { GuestAddressError } from "./errors.ts";

/**
 * Guest-physical memory as the host sees it. Guest RAM is backed in whole 4 KiB pages: a page is either
 * entirely readable or not at all (the guard page between the persistent and scratch regions is not).
 */
export interface PhysicalMemory {
  /**
   * Copies `into.length` bytes from guest-physical `gpa` into `into`. Returns false, copying nothing, when
   * any byte of the range is not guest RAM.
   */
  readPhysical(gpa: number, into: Uint8Array): boolean;
  /**
   * Writes `data` at guest-physical `gpa`, host-side (guest page protections do not apply). Returns false,
   * writing nothing, when any byte of the range is not guest RAM.
   */
  writePhysical(gpa: number, data: Uint8Array): boolean;
}

/** Page sizes of 4-level paging. */
export const PAGE_4K = 0x1000, PAGE_2M = 0x20_0000, PAGE_1G = 0x4000_0000;

/** Entry bits, low 32-bit word: present, writable, user, page size (PS; PAT in a PT entry). */
const P = 0x1, RW = 0x2, US = 0x4, PS = 0x80;
/** Execute-disable is bit 63: bit 31 of the entry's high word. */
const NX_HIGH = 0x8000_0000;
/** Bits 32..51 of an address, in the entry's high word. */
const ADDR_HIGH = 0xf_ffff;
/** Reserved bits of a PS entry: 13..29 for a 1 GiB page, 13..20 for a 2 MiB page (bit 12 is PAT). */
const RSVD_1G = 0x3fff_e000, RSVD_2M = 0x1f_e000;
const LEVEL_NAMES = ["PML4", "PDPT", "PD", "PT"] as const;

/** Most page tables {@linkcode mappedRanges} visits by default (a real guest has at most 475). */
export const MAX_WALK_TABLES = 4096;
/** Most mapped bytes {@linkcode mappedRanges} accepts by default (guest memory is at most 944 MiB). */
export const MAX_MAPPED_BYTES = 4 * PAGE_1G;

/** Where a guest virtual address leads. */
export interface Translation {
  /** The translated guest virtual address. */
  readonly address: bigint;
  /** Its guest-physical address. */
  readonly gpa: number;
  /** Size of the page that maps it: {@linkcode PAGE_4K}, {@linkcode PAGE_2M} or {@linkcode PAGE_1G}. */
  readonly pageSize: number;
  /** Accessible at CPL3 (U/S set at every level). */
  readonly user: boolean;
  /** Writable by the guest (R/W set at every level; CR0.WP is set, so this binds CPL0 too). */
  readonly writable: boolean;
  /** Executable by the guest (XD clear at every level). */
  readonly executable: boolean;
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** The physical address of the table or page an entry points at, for a page of `pageSize` bytes. */
function entryAddress(lo: number, hi: number, pageSize: number): number {
  const low = pageSize === PAGE_1G
    ? lo & 0xc000_0000
    : pageSize === PAGE_2M
    ? lo & 0xffe0_0000
    : lo & 0xffff_f000;
  return (hi & ADDR_HIGH) * 0x1_0000_0000 + (low >>> 0);
}

function checkCanonical(address: bigint): void {
  const top = address >> 47n;
  if (address < 0n || (top !== 0n && top !== 0x1ffffn)) {
    throw new GuestAddressError(address, "non-canonical", "bits 63..47 must all equal bit 47");
  }
}

/**
 * Translates one guest virtual address through the page tables at `cr3`.
 *
 * @example
 * ```ts
 * import { translate } from "./page_walk.ts";
 * const mem = new Uint8Array(0x4000); // 16 KiB of "guest RAM" holding its own page tables
 * const v = new DataView(mem.buffer);
 * v.setUint32(0x1000, 0x2000 | 7, true); // PML4[0] -> PDPT at 0x2000 (present, writable, user)
 * v.setUint32(0x2000, 0x3000 | 7, true); // PDPT[0] -> PD at 0x3000
 * v.setUint32(0x3000, 0x0000 | 0x87, true); // PD[0]: a 2 MiB user page at 0
 * const inRam = (gpa: number, n: number) => gpa + n <= mem.length;
 * const phys = {
 *   readPhysical: (gpa: number, into: Uint8Array) =>
 *     inRam(gpa, into.length) && (into.set(mem.subarray(gpa, gpa + into.length)), true),
 *   writePhysical: (gpa: number, data: Uint8Array) => inRam(gpa, data.length) && (mem.set(data, gpa), true),
 * };
 * console.log(translate(phys, 0x1000n, 0x1234n).gpa); // 4660
 * ```
 */
export function translate(mem: PhysicalMemory, cr3: bigint, address: bigint): Translation {
  checkCanonical(address);
  const entry = new Uint8Array(8);
  const ev = new DataView(entry.buffer);
  let table = entryAddress(Number(cr3 & 0xffff_ffffn), Number((cr3 >> 32n) & 0xffff_ffffn), PAGE_4K);
  let user = true, writable = true, executable = true;
  for (let level = 0; level < 4; level++) {
    const index = Number((address >> BigInt(39 - 9 * level)) & 511n);
    const name = LEVEL_NAMES[level];
    if (!mem.readPhysical(table + index * 8, entry)) {
      throw new GuestAddressError(address, "table outside guest memory", `${name} at ${hex(table)}`);
    }
    const lo = ev.getUint32(0, true), hi = ev.getUint32(4, true);
    if ((lo & P) === 0) {
      throw new GuestAddressError(address, "not mapped", `${name} entry ${index} is not present`);
    }
    user &&= (lo & US) !== 0;
    writable &&= (lo & RW) !== 0;
    if ((hi & NX_HIGH) !== 0) executable = false;
    let pageSize = PAGE_4K;
    if (level < 3 && (lo & PS) !== 0) {
      if (level === 0) throw new GuestAddressError(address, "reserved bit", `PML4 entry ${index} has PS set`);
      pageSize = level === 1 ? PAGE_1G : PAGE_2M;
      if ((lo & (level === 1 ? RSVD_1G : RSVD_2M)) !== 0) {
        throw new GuestAddressError(address, "reserved bit", `${name} entry ${index} is ${hex(lo)}`);
      }
    } else if (level < 3) {
      table = entryAddress(lo, hi, PAGE_4K);
      continue;
    }
    const offset = Number(address & BigInt(pageSize - 1));
    return { address, gpa: entryAddress(lo, hi, pageSize) + offset, pageSize, user, writable, executable };
  }
  throw new Error("unreachable: a 4-level walk ends at a leaf");
}

/** One piece of a virtual range within a 4 KiB page: `length` bytes at `translation.gpa`. */
interface Piece {
  translation: Translation;
  offset: number;
  length: number;
}

function* pieces(mem: PhysicalMemory, cr3: bigint, address: bigint, length: number): Generator<Piece> {
  let offset = 0;
  while (offset < length) {
    const t = translate(mem, cr3, address + BigInt(offset));
    // Pieces end at 4 KiB boundaries even inside big pages: guest RAM is backed in 4 KiB pages, so a
    // read stops exactly where RAM does.
    const n = Math.min(length - offset, PAGE_4K - (t.gpa % PAGE_4K));
    yield { translation: t, offset, length: n };
    offset += n;
  }
}

/**
 * Reads guest virtual memory into `into`, page by page, and returns how many bytes it read: fewer than
 * `into.length` when a page on the way is unmapped or not guest RAM (the rest of `into` is untouched).
 * Supervisor pages are readable here; the guest itself could not read them.
 *
 * @example
 * ```ts
 * import { readVirtual } from "./page_walk.ts";
 * const mem = new Uint8Array(0x4000); // 16 KiB of "guest RAM" holding its own page tables
 * const v = new DataView(mem.buffer);
 * v.setUint32(0x1000, 0x2000 | 7, true); // PML4[0] -> PDPT at 0x2000 (present, writable, user)
 * v.setUint32(0x2000, 0x3000 | 7, true); // PDPT[0] -> PD at 0x3000
 * v.setUint32(0x3000, 0x0000 | 0x87, true); // PD[0]: a 2 MiB user page at 0
 * const inRam = (gpa: number, n: number) => gpa + n <= mem.length;
 * const phys = {
 *   readPhysical: (gpa: number, into: Uint8Array) =>
 *     inRam(gpa, into.length) && (into.set(mem.subarray(gpa, gpa + into.length)), true),
 *   writePhysical: (gpa: number, data: Uint8Array) => inRam(gpa, data.length) && (mem.set(data, gpa), true),
 * };
 * console.log(readVirtual(phys, 0x1000n, 0x3ffen, new Uint8Array(8))); // 2: then RAM ends
 * ```
 */
export function readVirtual(mem: PhysicalMemory, cr3: bigint, address: bigint, into: Uint8Array): number {
  let done = 0;
  try {
    for (const p of pieces(mem, cr3, address, into.length)) {
      if (!mem.readPhysical(p.translation.gpa, into.subarray(p.offset, p.offset + p.length))) break;
      done += p.length;
    }
  } catch (e) {
    if (!(e instanceof GuestAddressError)) throw e;
  }
  return done;
}

/**
 * Writes guest virtual memory host-side, all or nothing as far as the page tables go: every page is
 * translated and checked before the first byte is written. Only user pages (those the guest can see) are
 * writable, read-only ones included (that is how breakpoints get into code); the system area (U/S clear)
 * never is.
 *
 * @throws {GuestAddressError} when a page is unmapped, outside guest memory, or a supervisor page.
 * @example
 * ```ts
 * import { writeVirtual } from "./page_walk.ts";
 * const mem = new Uint8Array(0x4000); // 16 KiB of "guest RAM" holding its own page tables
 * const v = new DataView(mem.buffer);
 * v.setUint32(0x1000, 0x2000 | 7, true); // PML4[0] -> PDPT at 0x2000 (present, writable, user)
 * v.setUint32(0x2000, 0x3000 | 7, true); // PDPT[0] -> PD at 0x3000
 * v.setUint32(0x3000, 0x0000 | 0x87, true); // PD[0]: a 2 MiB user page at 0
 * const inRam = (gpa: number, n: number) => gpa + n <= mem.length;
 * const phys = {
 *   readPhysical: (gpa: number, into: Uint8Array) =>
 *     inRam(gpa, into.length) && (into.set(mem.subarray(gpa, gpa + into.length)), true),
 *   writePhysical: (gpa: number, data: Uint8Array) => inRam(gpa, data.length) && (mem.set(data, gpa), true),
 * };
 * writeVirtual(phys, 0x1000n, 0x3800n, new Uint8Array([1, 2, 3]));
 * console.log(mem[0x3801]); // 2
 * ```
 */
export function writeVirtual(mem: PhysicalMemory, cr3: bigint, address: bigint, data: Uint8Array): void {
  const list = [...pieces(mem, cr3, address, data.length)];
  for (const p of list) {
    if (!p.translation.user) {
      throw new GuestAddressError(p.translation.address, "supervisor page", "the system area is read-only");
    }
  }
  for (const p of list) {
    if (!mem.writePhysical(p.translation.gpa, data.subarray(p.offset, p.offset + p.length))) {
      throw new GuestAddressError(
        p.translation.address,
        "page outside guest memory",
        `gpa ${hex(p.translation.gpa)}`,
      );
    }
  }
}

/** A run of virtual pages with the same permissions. */
export interface MappedRange {
  /** First guest virtual address (page aligned). */
  readonly start: bigint;
  /** Length in bytes (a page multiple). */
  readonly size: number;
  /** Accessible at CPL3. */
  readonly user: boolean;
  /** Writable by the guest. */
  readonly writable: boolean;
  /** Executable by the guest. */
  readonly executable: boolean;
}

/** Options of {@linkcode mappedRanges}. */
export interface MappedRangeOptions {
  /** Also list supervisor pages (the system area). Default false: only what the guest can see. */
  readonly includeSupervisor?: boolean;
  /** Most page tables to visit; default {@linkcode MAX_WALK_TABLES}. */
  readonly maxTables?: number;
  /** Most mapped bytes to accept; default {@linkcode MAX_MAPPED_BYTES}. */
  readonly maxBytes?: number;
}

/**
 * Every mapped range of the address space at `cr3`, sorted by address, with adjacent pages of equal
 * permissions coalesced. Pages whose physical address is not guest RAM are left out (an access to them
 * would not reach memory).
 *
 * @throws {GuestAddressError} when a table lies outside guest memory, an entry has a reserved bit set, or a
 * limit is exceeded (tables that point at each other can describe terabytes with a handful of pages).
 * @example
 * ```ts
 * import { mappedRanges } from "./page_walk.ts";
 * const mem = new Uint8Array(0x4000); // 16 KiB of "guest RAM" holding its own page tables
 * const v = new DataView(mem.buffer);
 * v.setUint32(0x1000, 0x2000 | 7, true); // PML4[0] -> PDPT at 0x2000 (present, writable, user)
 * v.setUint32(0x2000, 0x3000 | 7, true); // PDPT[0] -> PD at 0x3000
 * v.setUint32(0x3000, 0x0000 | 0x87, true); // PD[0]: a 2 MiB user page at 0
 * const inRam = (gpa: number, n: number) => gpa + n <= mem.length;
 * const phys = {
 *   readPhysical: (gpa: number, into: Uint8Array) =>
 *     inRam(gpa, into.length) && (into.set(mem.subarray(gpa, gpa + into.length)), true),
 *   writePhysical: (gpa: number, data: Uint8Array) => inRam(gpa, data.length) && (mem.set(data, gpa), true),
 * };
 * // The 2 MiB page maps 16 KiB of RAM; the rest is not memory and is left out.
 * console.log(mappedRanges(phys, 0x1000n)); // [{ start: 0n, size: 16384, user: true, writable: true, executable: true }]
 * ```
 */
export function mappedRanges(
  mem: PhysicalMemory,
  cr3: bigint,
  options: MappedRangeOptions = {},
): MappedRange[] {
  const maxTables = options.maxTables ?? MAX_WALK_TABLES;
  const maxBytes = options.maxBytes ?? MAX_MAPPED_BYTES;
  const includeSupervisor = options.includeSupervisor ?? false;
  const out: MappedRange[] = [];
  const probe = new Uint8Array(1);
  let tables = 0;
  let bytes = 0;

  const emit = (start: bigint, size: number, user: boolean, writable: boolean, executable: boolean) => {
    const last = out[out.length - 1];
    if (
      last !== undefined && last.start + BigInt(last.size) === start && last.user === user &&
      last.writable === writable && last.executable === executable
    ) {
      out[out.length - 1] = { ...last, size: last.size + size };
    } else {
      out.push({ start, size, user, writable, executable });
    }
  };

  const leaf = (
    va: bigint,
    gpa: number,
    size: number,
    user: boolean,
    writable: boolean,
    executable: boolean,
  ) => {
    if (!user && !includeSupervisor) return;
    // Count what is mapped, backed or not: the probing below costs time per page, and hostile tables can
    // map terabytes of nothing with a few entries.
    bytes += size;
    if (bytes > maxBytes) {
      throw new GuestAddressError(va, "too much mapped memory", `more than ${maxBytes} bytes are mapped`);
    }
    // Guest RAM is backed in whole pages, so one byte per 4 KiB page tells whether the page is memory.
    let runStart = -1;
    for (let off = 0; off <= size; off += PAGE_4K) {
      const backed = off < size && mem.readPhysical(gpa + off, probe);
      if (backed && runStart < 0) runStart = off;
      if (!backed && runStart >= 0) {
        emit(va + BigInt(runStart), off - runStart, user, writable, executable);
        runStart = -1;
      }
    }
  };

  const visit = (
    table: number,
    level: number,
    base: bigint,
    user: boolean,
    writable: boolean,
    exec: boolean,
  ) => {
    if (++tables > maxTables) {
      throw new GuestAddressError(base, "too many page tables", `more than ${maxTables} tables visited`);
    }
    const page = new Uint8Array(PAGE_4K);
    if (!mem.readPhysical(table, page)) {
      throw new GuestAddressError(
        base,
        "table outside guest memory",
        `${LEVEL_NAMES[level]} at ${hex(table)}`,
      );
    }
    const v = new DataView(page.buffer);
    const shift = 39 - 9 * level;
    for (let i = 0; i < 512; i++) {
      const lo = v.getUint32(i * 8, true), hi = v.getUint32(i * 8 + 4, true);
      if ((lo & P) === 0) continue;
      let va = base | (BigInt(i) << BigInt(shift));
      if (level === 0 && i >= 256) va |= 0xffff_0000_0000_0000n; // sign-extend bit 47: the upper half
      const u = user && (lo & US) !== 0;
      const w = writable && (lo & RW) !== 0;
      const x = exec && (hi & NX_HIGH) === 0;
      if (level === 3) {
        leaf(va, entryAddress(lo, hi, PAGE_4K), PAGE_4K, u, w, x);
      } else if ((lo & PS) !== 0) {
        if (level === 0) throw new GuestAddressError(va, "reserved bit", `PML4 entry ${i} has PS set`);
        const size = level === 1 ? PAGE_1G : PAGE_2M;
        if ((lo & (level === 1 ? RSVD_1G : RSVD_2M)) !== 0) {
          throw new GuestAddressError(va, "reserved bit", `${LEVEL_NAMES[level]} entry ${i} is ${hex(lo)}`);
        }
        leaf(va, entryAddress(lo, hi, size), size, u, w, x);
      } else {
        visit(entryAddress(lo, hi, PAGE_4K), level + 1, va, u, w, x);
      }
    }
  };

  visit(
    entryAddress(Number(cr3 & 0xffff_ffffn), Number((cr3 >> 32n) & 0xffff_ffffn), PAGE_4K),
    0,
    0n,
    true,
    true,
    true,
  );
  return out;
}
