/**
 * The KVM user-space ABI for x86-64: ioctl request numbers, capability numbers, exit reasons and the byte
 * offsets of the structs snapvm passes. Values were checked against `<linux/kvm.h>` with `offsetof` on
 * Linux 6.18 (see docs/KVM.md for how).
 *
 * @module
 */

/** ioctl request numbers (`_IO`/`_IOR`/`_IOW` already applied). */
export const KVM = {
  /** `/dev/kvm`: returns 12. */
  GET_API_VERSION: 0xae00n,
  /** `/dev/kvm`: returns a VM fd. */
  CREATE_VM: 0xae01n,
  /** `/dev/kvm` or VM fd: capability number in, >0 if present. */
  CHECK_EXTENSION: 0xae03n,
  /** `/dev/kvm`: size of the `kvm_run` mapping of a vCPU fd. */
  GET_VCPU_MMAP_SIZE: 0xae04n,
  /** VM fd: vCPU id in, vCPU fd out. */
  CREATE_VCPU: 0xae41n,
  /** VM fd: `struct kvm_dirty_log` (16 B: slot u32 @0, bitmap pointer @8). */
  GET_DIRTY_LOG: 0x4010ae42n,
  /**
   * VM fd: `struct kvm_clear_dirty_log` (24 B: slot u32 @0, num_pages u32 @4, first_page u64 @8, bitmap
   * pointer @16): re-protects the given pages (with `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` enabled).
   */
  CLEAR_DIRTY_LOG: 0xc018aec0n,
  /** VM fd: `struct kvm_enable_cap` (104 B: cap u32 @0, flags u32 @4, args u64[4] @8). */
  ENABLE_CAP: 0x4068aea3n,
  /** VM fd: `struct kvm_userspace_memory_region` (32 B). */
  SET_USER_MEMORY_REGION: 0x4020ae46n,
  /** vCPU fd: run until the next exit. */
  RUN: 0xae80n,
  /** vCPU fd: `struct kvm_regs` (144 B) out. */
  GET_REGS: 0x8090ae81n,
  /** vCPU fd: `struct kvm_sregs` (312 B) out. */
  GET_SREGS: 0x8138ae83n,
  /** vCPU fd: `struct kvm_sregs` in. */
  SET_SREGS: 0x4138ae84n,
  /**
   * vCPU fd: `struct kvm_xsave` (4096 B, or the size `KVM_CAP_XSAVE2` reports): the XSAVE image, legacy
   * area first (FCW u16 @0, MXCSR u32 @24), XSTATE_BV u64 @512.
   */
  SET_XSAVE: 0x5000aea5n,
  /**
   * vCPU fd: `struct kvm_debugregs` (128 B: db[4] u64 @0, dr6 @32, dr7 @40, flags u64 @48, reserved[9]).
   */
  SET_DEBUGREGS: 0x4080aea2n,
  /** vCPU fd: `struct kvm_debugregs` out. */
  GET_DEBUGREGS: 0x8080aea1n,
  /**
   * vCPU fd: `struct kvm_msrs` (8 B header: nmsrs u32 @0, pad) followed by `struct kvm_msr_entry` (16 B:
   * index u32 @0, reserved u32, data u64 @8); returns how many entries were set.
   */
  SET_MSRS: 0x4008ae89n,
  /** vCPU fd: `struct kvm_msrs` in/out; returns how many entries were read. */
  GET_MSRS: 0xc008ae88n,
  /** vCPU fd: `struct kvm_xcrs` (392 B: nr_xcrs u32 @0, flags u32 @4, xcrs[16] {xcr u32, pad, value u64} @8). */
  SET_XCRS: 0x4188aea7n,
  /** vCPU fd: `struct kvm_vcpu_events` (64 B: exception @0, interrupt @8, nmi @12, sipi @16, flags u32 @20). */
  SET_VCPU_EVENTS: 0x4040aea0n,
  /** vCPU fd: `struct kvm_regs` in (see {@linkcode REGS}). */
  SET_REGS: 0x4090ae82n,
  /** vCPU fd: `struct kvm_signal_mask` {u32 len = 8, u8 sigset[8]}: the signal mask while in KVM_RUN. */
  SET_SIGNAL_MASK: 0x4004ae8bn,
} as const;

/** Capability numbers for `KVM_CHECK_EXTENSION`. */
export const KVM_CAP = {
  SYNC_REGS: 74,
  /** With arg 1: `KVM_GET_DIRTY_LOG` no longer re-protects pages; `KVM_CLEAR_DIRTY_LOG` does, per range. */
  MANUAL_DIRTY_LOG_PROTECT2: 168,
  /** Returns the size of `struct kvm_xsave` this host needs (≥ 4096). */
  XSAVE2: 208,
  IMMEDIATE_EXIT: 136,
} as const;

/** The only KVM API version there has ever been. */
export const KVM_API_VERSION = 12;

/** `kvm_run.exit_reason` values. */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
} as const;

/** Byte offsets in the `kvm_run` mapping. */
export const RUN = {
  IMMEDIATE_EXIT: 1,
  EXIT_REASON: 8,
  /** `io`: direction u8 (1 = out), size u8, port u16, count u32, data_offset u64. */
  IO_DIRECTION: 32,
  IO_SIZE: 33,
  IO_PORT: 34,
  IO_COUNT: 36,
  IO_DATA_OFFSET: 40,
  /** `mmio`: phys_addr u64 @32, data[8] @40, len u32 @48, is_write u8 @52. */
  MMIO_PHYS_ADDR: 32,
  MMIO_IS_WRITE: 52,
  /** `fail_entry.hardware_entry_failure_reason` u64. */
  FAIL_ENTRY_REASON: 32,
  /** `internal.suberror` u32. */
  INTERNAL_SUBERROR: 32,
  /** Which register sets KVM copies into `s` on exit (bit 0 = regs). */
  VALID_REGS: 288,
  /** Which register sets KVM loads from `s` on entry (bit 0 = regs). */
  DIRTY_REGS: 296,
  /** `s.regs`: a `struct kvm_regs` inside the mapping (KVM_CAP_SYNC_REGS). */
  SYNC_REGS: 304,
  /** `s.sregs`: a `struct kvm_sregs` inside the mapping, after `s.regs`. */
  SYNC_SREGS: 448,
} as const;

/** `KVM_SYNC_X86_REGS`: the general-purpose register set of `kvm_run.s`. */
export const KVM_SYNC_X86_REGS = 1n;
/** `KVM_SYNC_X86_SREGS`: the special register set of `kvm_run.s`. */
export const KVM_SYNC_X86_SREGS = 2n;

/**
 * MSRs a guest at CPL0 could change, with the values a vCPU has after `KVM_CREATE_VCPU` (Intel SDM vol. 3,
 * "Initialization"): restored on a full vCPU reset so none of them outlives a tenant. FS/GS bases are part
 * of the segment registers (`KVM_SET_SREGS`).
 */
export const RESET_MSRS: readonly (readonly [index: number, value: bigint])[] = [
  [0x174, 0n], // IA32_SYSENTER_CS
  [0x175, 0n], // IA32_SYSENTER_ESP
  [0x176, 0n], // IA32_SYSENTER_EIP
  [0x277, 0x0007040600070406n], // IA32_PAT
  [0xc0000081, 0n], // STAR
  [0xc0000082, 0n], // LSTAR
  [0xc0000083, 0n], // CSTAR
  [0xc0000084, 0n], // SFMASK
  [0xc0000102, 0n], // KERNEL_GS_BASE
  [0xc0000103, 0n], // TSC_AUX
];

/** `struct kvm_debugregs` values after reset: DR0–DR3 0, DR6 0xFFFF0FF0, DR7 0x400. */
export const RESET_DR6 = 0xffff0ff0n, RESET_DR7 = 0x400n;

/** Byte offsets in `struct kvm_regs` (144 B, 18 × u64). */
export const REGS = {
  SIZE: 144,
  RAX: 0,
  RBX: 8,
  RCX: 16,
  RDX: 24,
  RSI: 32,
  RDI: 40,
  RSP: 48,
  RBP: 56,
  R8: 64,
  R11: 88,
  RIP: 128,
  RFLAGS: 136,
} as const;

/**
 * Byte offsets in `struct kvm_sregs` (312 B). Segments are 24 B each: base u64 @0, limit u32 @8,
 * selector u16 @12, then u8 type @14, present, dpl, db, s, l, g, avl, unusable, padding @23.
 */
export const SREGS = {
  SIZE: 312,
  CS: 0,
  DS: 24,
  ES: 48,
  FS: 72,
  GS: 96,
  SS: 120,
  TR: 144,
  LDT: 168,
  GDT: 192,
  IDT: 208,
  CR0: 224,
  CR2: 232,
  CR3: 240,
  CR4: 248,
  CR8: 256,
  EFER: 264,
  APIC_BASE: 272,
  INTERRUPT_BITMAP: 280,
} as const;

/**
 * Byte offsets in `struct kvm_segment` (24 B): base u64, limit u32, selector u16, then one u8 per flag in
 * this order, then one padding byte.
 */
export const SEGMENT = {
  SIZE: 24,
  BASE: 0,
  LIMIT: 8,
  SELECTOR: 12,
  /** type, present, dpl, db, s, l, g, avl, unusable: one byte each from here. */
  FLAGS: 14,
} as const;

/** Byte offsets in `struct kvm_dtable` (16 B): base u64, limit u16, 6 padding bytes. */
export const DTABLE = { BASE: 0, LIMIT: 8 } as const;

/** `struct kvm_userspace_memory_region` flag: log dirty pages. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
