/**
 * The host side of the host/guest ABI (docs/ABI.md). Changing any value here means bumping ABI_VERSION;
 * tests/abi_test.ts pins them together.
 *
 * @module
 */
import type { MemoryMap } from "../../format/tags.ts";
import { VALUE_TAG_NAMES } from "../../format/host_functions.ts";
import type { ReturnType } from "../types.ts";

/** Version of the memory layout, call protocol and register conventions. */
export const ABI_VERSION = 4;

/** Page size. */
export const PAGE = 4096;

/** Fixed guest-physical addresses of the system area. */
export const GDT_ADDR = 0x1000,
  TSS_ADDR = 0x1100,
  IDT_ADDR = 0x1800,
  STUB_ADDR = 0x2000,
  EXC_STACK_ADDR = 0x3000,
  EXC_STACK_TOP = 0x5000,
  PML4_ADDR = 0x5000,
  PDPT_ADDR = 0x6000,
  PD_ADDR = 0x7000,
  PT_ADDR = 0x8000;
/** Where guest images are linked. */
export const IMAGE_BASE = 0x200000;
/**
 * The host-only function table: `u32 length` + the guest's function list as its init result carried it.
 * Written by the host after init and kept in snapshots, so a sandbox made from a Call snapshot knows the
 * guest's signatures without asking the guest. Not mapped for the guest.
 */
export const FUNC_TABLE_ADDR = 0x1e0000, FUNC_TABLE_SIZE = 0x1f000;
/**
 * The info page (ABI 3): host-written, mapped read-only and executable for the guest. `generation` (u64 @0)
 * changes on every restore and every sandbox made from a snapshot, so clones can tell they are clones; `seed`
 * (32 bytes @8) is fresh entropy written with it, for reseeding the guest's random numbers. At 0x40 an XSAVE
 * area in its initial state, at 0x300 the entry code every entry into the guest goes through (docs/ABI.md,
 * "Entry"): it resets x87/SSE/AVX state from that area with XRSTOR (or FXRSTOR where XRSTOR is not
 * available at CPL3) and jumps to the address the host put in R11.
 */
export const INFO_ADDR = 0x1ff000, INFO_GENERATION = 0, INFO_SEED = 8, INFO_SEED_SIZE = 32, INFO_SIZE = 40;
/** Offsets in the info page: the XSAVE area, and the entry code with its two entry points. */
export const INFO_XSAVE_AREA = 0x40, INFO_XSAVE_AREA_SIZE = 576, INFO_ENTRY = 0x300;
/** Addresses of the entry code: through XRSTOR, through FXRSTOR, and of the XRSTOR instruction itself. */
export const ENTRY_XRSTOR = INFO_ADDR + INFO_ENTRY,
  ENTRY_FXRSTOR = INFO_ADDR + INFO_ENTRY + 0x14,
  ENTRY_XRSTOR_SITE = INFO_ADDR + INFO_ENTRY + 0x0a;
/** The system area proper (descriptor tables, stubs, exception stack, page tables): rebuilt on every load. */
export const SYSTEM_AREA_END = FUNC_TABLE_ADDR;
/** The exception frame the IDT stubs leave below `EXC_STACK_TOP`: offsets from the top (ABI 3). */
export const FRAME = { SS: -8, RSP: -16, RFLAGS: -24, CS: -32, RIP: -40, ERROR_CODE: -48, RAX: -56 } as const;
/** Page tables fit between PT_ADDR and FUNC_TABLE_ADDR: one per 2 MiB, so at most this much guest memory. */
export const MAX_GUEST_MEMORY = ((FUNC_TABLE_ADDR - PT_ADDR) / PAGE) * 0x200000;

/** The fixed places of the memory map, as the snapshot codec checks header fields against them. */
export const MEMORY_MAP: MemoryMap = Object.freeze({
  pageTablesBase: PML4_ADDR,
  pageTablesEnd: FUNC_TABLE_ADDR,
  imageBase: IMAGE_BASE,
  maxGuestMemory: MAX_GUEST_MEMORY,
});

/** GDT selectors. */
export const SEL_KERNEL_CODE = 0x08,
  SEL_KERNEL_DATA = 0x10,
  SEL_USER_DATA = 0x2b,
  SEL_USER_CODE = 0x33,
  SEL_TSS = 0x38;
/** GDT entries (9 × 8 bytes: null, kcode, kdata, -, -, udata, ucode, tss low, tss high). */
export const GDT_ENTRIES = 9;
/** TSS limit: 104-byte TSS plus a 32-byte I/O bitmap for ports 0..255 and its 0xff terminator. */
export const TSS_LIMIT = 0x67 + 33;
/** IDT gates for the 32 architectural exception vectors. */
export const IDT_VECTORS = 32;

/**
 * Exception vectors for which the CPU pushes an error code (Intel SDM vol. 3, table 6-1): the IDT stubs
 * push a zero for every other vector so the frame is uniform, and the host reports the code only for these.
 */
export const ERROR_CODE_VECTORS: ReadonlySet<number> = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

/** Control registers for long mode with paging; CPL3 guests. */
export const CR0 = 0x80050033n, CR4 = 0x620n, EFER = 0xd00n;
/** RFLAGS at entry: bit 1 only (IOPL 0, interrupts off). */
export const RFLAGS = 0x2n;

/** I/O ports. */
export const PORT_DONE = 0xe0,
  PORT_HOST_CALL = 0xe1,
  PORT_ABORT = 0xe2,
  PORT_LOG = 0xe3,
  PORT_EXCEPTION = 0xef;

/**
 * The mailbox (ABI 4): the top `MAILBOX_SIZE` bytes of the stack, `[stack_top - 128, stack_top)`, through
 * which a hot sandbox's host and guest talk without a VM exit (docs/ABI.md, "Hot mode"). Line 0 is written
 * by the host, line 1 by the guest; the host trusts nothing it reads there except as checked by
 * `vm/machine/mailbox.ts`.
 */
export const MAILBOX_SIZE = 128;
/** Byte offsets in the mailbox: `HOST_SEQ` u32, `MODE` u32, `IDLE_TSC` u64; `GUEST_SEQ` u32, `KIND` u32. */
export const MAILBOX = { HOST_SEQ: 0, MODE: 4, IDLE_TSC: 8, GUEST_SEQ: 64, KIND: 68 } as const;
/** Mailbox modes: exit-based calls (`out DONE` per call), or hot (the guest polls the mailbox). */
export const MAILBOX_MODE_EXIT = 0, MAILBOX_MODE_HOT = 1;
/** Kinds of the guest's mailbox messages: a call's result, a host call, a log record (all in the output buffer). */
export const MAILBOX_DONE = 1, MAILBOX_HOST_CALL = 2, MAILBOX_LOG = 3;

/** Boot record magic "SVBI". */
export const BOOT_MAGIC = 0x49425653;
/** Request kinds. */
export const REQ_CALL = 1, REQ_LIST = 2;
/** Result status values. */
export const STATUS_OK = 0, STATUS_ERROR = 1, STATUS_NOT_FOUND = 2;
/** Guest error codes. */
export const ERR_GUEST = 1,
  ERR_HOST_FUNCTION = 2,
  ERR_BAD_ARGUMENTS = 3,
  ERR_OUT_OF_MEMORY = 4,
  ERR_OUTPUT_TOO_LARGE = 5;

/**
 * Value type tags by type name. The tags are the snapshot format's (`ValueTag`): host functions recorded in
 * a file use the same bytes as values on the wire, so one table serves both.
 */
export const TAGS: Readonly<Record<ReturnType, number>> = Object.freeze(
  Object.fromEntries(Object.entries(VALUE_TAG_NAMES).map(([tag, name]) => [name, Number(tag)])) as Record<
    ReturnType,
    number
  >,
);

/** Log levels as the guest numbers them. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "off"] as const;
