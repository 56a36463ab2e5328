/**
 * A KVM vCPU file descriptor and its `kvm_run` mapping.
 *
 * @module
 */
import { check, ErrnoError, lastErrno } from "../../ffi/linux/errno.ts";
import { libc } from "../../ffi/linux/libc.ts";
import { untrackFd } from "../../ffi/linux/reaper.ts";
import {
  KVM,
  KVM_SYNC_X86_REGS,
  KVM_SYNC_X86_SREGS,
  REGS,
  RESET_DR6,
  RESET_DR7,
  RESET_MSRS,
  RUN,
  SREGS,
} from "../../ffi/linux/kvm.ts";
import { Mapping, osMemory } from "../memory/mapping.ts";
import { mapShared } from "../memory/posix/os_memory.ts";
import type { MemoryStaging } from "../backend/backend.ts";

/** The `KVM_SYNC_X86_*` bits as numbers, for the low word of `kvm_dirty_regs`. */
const SYNC_REGS = Number(KVM_SYNC_X86_REGS), SYNC_SREGS = Number(KVM_SYNC_X86_SREGS);

// entryStaging() writes both register sets with one copy: `struct kvm_sync_regs` puts sregs right after regs.
if (RUN.SYNC_SREGS !== RUN.SYNC_REGS + REGS.SIZE) throw new Error("kvm_run.s.sregs does not follow s.regs");

/** The registers an entry sets (see `EntryRegisters` in vm/backend/backend.ts). */
type EntryRegs = { rip: bigint; rsp: bigint; rflags: bigint; rdi: bigint; r11?: bigint };

/** `struct kvm_regs` with RIP, RSP, RFLAGS, RDI and R11 set, every other register zero, into `out`. */
function encodeRegs(r: EntryRegs, out: Uint8Array): void {
  out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, REGS.SIZE);
  v.setBigUint64(REGS.RIP, r.rip, true);
  v.setBigUint64(REGS.RSP, r.rsp, true);
  v.setBigUint64(REGS.RFLAGS, r.rflags, true);
  v.setBigUint64(REGS.RDI, r.rdi, true);
  v.setBigUint64(REGS.R11, r.r11 ?? 0n, true);
}

/** `KVM_RUN` returned -1 with EINTR: a signal interrupted it (reported like `KVM_EXIT_INTR`). */
export const RUN_INTERRUPTED = -1;

/**
 * Wrapper of a vCPU fd. Every vCPU ioctl costs ~4.5 µs on PVM hosts (each one traps to the outer
 * hypervisor), so the call path uses only `KVM_RUN` and passes registers through `kvm_run.s.regs`
 * (`KVM_CAP_SYNC_REGS`).
 *
 * @example
 * ```ts
 * import { Kvm } from "./kvm.ts";
 * using vm = Kvm.get().createVm();
 * using vcpu = vm.createVcpu(0);
 * console.log(vcpu.run.view.getUint32(8, true));
 * ```
 */
export class VcpuFd {
  #fd: number;
  /** The `kvm_run` area (exit reason, I/O data, synced registers). */
  readonly run: Mapping;

  /**
   * Wraps an open vCPU fd (tracked by the thread's reaper, see `ffi/linux/reaper.ts`); maps `mmapSize` bytes
   * of its `kvm_run` area. The object owns both.
   */
  constructor(fd: number, mmapSize: number) {
    this.#fd = fd;
    this.run = Mapping.adopt(mapShared(fd, mmapSize), mmapSize, osMemory.unmapView);
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * `KVM_RUN`: runs the guest until the next exit. Returns the exit reason, or {@linkcode RUN_INTERRUPTED}
   * when a signal interrupted it.
   *
   * @example
   * ```ts
   * // const reason = vcpu.runOnce();
   * ```
   */
  runOnce(): number {
    if (libc().ioctl(this.#fd, KVM.RUN, 0n) < 0) {
      const errno = lastErrno();
      if (errno === 4 || errno === 11) return RUN_INTERRUPTED; // EINTR, EAGAIN
      throw new ErrnoError("ioctl(KVM_RUN)", errno);
    }
    return this.run.view.getUint32(RUN.EXIT_REASON, true);
  }

  /**
   * Stages general-purpose registers for the next `KVM_RUN` through `kvm_run.s.regs`, without an ioctl.
   * Only RIP, RSP, RFLAGS, RDI and R11 are set; every other register is zeroed. `r` must not change once
   * passed: the encoding of the last object staged is kept and copied again when it comes back.
   *
   * @example
   * ```ts
   * // vcpu.stageRegs({ rip: 0x200000n, rsp: 0x400000n, rflags: 2n, rdi: 0n });
   * ```
   */
  stageRegs(r: EntryRegs): void {
    // Encoded once per object: every restore of a snapshot stages the same entry (see GuestVm.enterAt).
    if (r !== this.#staged) {
      encodeRegs(r, this.#stagedBytes);
      this.#staged = r;
    }
    this.run.bytes.set(this.#stagedBytes, RUN.SYNC_REGS);
    this.#markDirty(SYNC_REGS);
  }

  /** The registers staged last, and their `struct kvm_regs`. */
  #staged: object | undefined;
  readonly #stagedBytes = new Uint8Array(REGS.SIZE);

  /**
   * General-purpose and special registers for the next `KVM_RUN` as memory writes for the caller to make
   * (see `VirtualMachine.stageEntryInMemory`): copying the returned block over `kvm_run.s.regs` and
   * `kvm_run.s.sregs` (adjacent: `struct kvm_sync_regs`) and setting both bits of `kvm_dirty_regs` is what
   * {@linkcode stageRegs} and {@linkcode stageSregs} do. `r` and `sregs` must not change once passed: the
   * block of the last pair is kept (in memory that never moves) and returned again for the same pair.
   *
   * @example
   * ```ts
   * // const s = vcpu.entryStaging({ rip: 0x200000n, rsp: 0x400000n, rflags: 2n, rdi: 0n }, sregsBytes);
   * ```
   */
  entryStaging(r: EntryRegs, sregs: Uint8Array): MemoryStaging {
    if (r !== this.#entryRegs || sregs !== this.#entrySregs || this.#entryStaging === undefined) {
      const block = this.#entryBlock;
      encodeRegs(r, block.subarray(0, REGS.SIZE));
      block.set(sregs.subarray(0, SREGS.SIZE), REGS.SIZE);
      this.#entryRegs = r;
      this.#entrySregs = sregs;
      const run = Number(this.run.address);
      this.#entryStaging = {
        to: run + RUN.SYNC_REGS,
        from: Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(block))),
        length: block.length,
        flagsAt: run + RUN.DIRTY_REGS,
        flags: SYNC_REGS | SYNC_SREGS,
      };
    }
    return this.#entryStaging;
  }

  #entryRegs: object | undefined;
  #entrySregs: Uint8Array | undefined;
  #entryStaging: MemoryStaging | undefined;
  /** `struct kvm_regs` then `struct kvm_sregs`, as in `kvm_run.s`; an ArrayBuffer's memory never moves. */
  readonly #entryBlock = new Uint8Array(new ArrayBuffer(REGS.SIZE + SREGS.SIZE));

  /** `kvm_run.kvm_dirty_regs`' low word (every `KVM_SYNC_X86_*` bit is in it): no bigint per staging. */
  #markDirty(bit: number): void {
    const bytes = this.run.bytes;
    // A view of the mapping's buffer: detached with it when the mapping closes.
    const words = this.#dirtyWords ??= new Uint32Array(bytes.buffer, bytes.byteOffset + RUN.DIRTY_REGS, 1);
    words[0] |= bit;
  }

  #dirtyWords: Uint32Array | undefined;

  /**
   * Stages special registers (a 312-byte `struct kvm_sregs`) for the next `KVM_RUN` through
   * `kvm_run.s.sregs`: KVM loads them on entry, without a `KVM_SET_SREGS` ioctl (each vCPU ioctl costs
   * ~5–10 µs on PVM hosts; this costs the kernel's own copy).
   *
   * @example
   * ```ts
   * // vcpu.stageSregs(sregsToKvm(abiSregs()));
   * ```
   */
  stageSregs(sregs: Uint8Array): void {
    this.run.bytes.set(sregs.length === SREGS.SIZE ? sregs : sregs.subarray(0, SREGS.SIZE), RUN.SYNC_SREGS);
    this.#markDirty(SYNC_SREGS);
  }

  /**
   * The general-purpose registers the next `KVM_RUN` starts from, as a 144-byte `struct kvm_regs`: the ones
   * staged with {@linkcode stageRegs} when a set is waiting in `kvm_run.s.regs` (KVM loads it at the next
   * `KVM_RUN` and clears the dirty bit), `KVM_GET_REGS` otherwise.
   *
   * @example
   * ```ts
   * // const regs = vcpu.getRegs();
   * ```
   */
  getRegs(out: Uint8Array = new Uint8Array(REGS.SIZE)): Uint8Array {
    if ((this.run.view.getBigUint64(RUN.DIRTY_REGS, true) & KVM_SYNC_X86_REGS) !== 0n) {
      out.set(this.run.bytes.subarray(RUN.SYNC_REGS, RUN.SYNC_REGS + REGS.SIZE));
      return out;
    }
    check("ioctl(KVM_GET_REGS)", libc().ioctl_buf(this.#fd, KVM.GET_REGS, out));
    return out;
  }

  /**
   * The special registers the next `KVM_RUN` starts from, as a 312-byte `struct kvm_sregs`: the ones staged
   * with {@linkcode stageSregs} when a set is waiting in `kvm_run.s.sregs`, `KVM_GET_SREGS` otherwise.
   *
   * @example
   * ```ts
   * // const sregs = vcpu.getSregs();
   * ```
   */
  getSregs(out: Uint8Array = new Uint8Array(SREGS.SIZE)): Uint8Array {
    if ((this.run.view.getBigUint64(RUN.DIRTY_REGS, true) & KVM_SYNC_X86_SREGS) !== 0n) {
      out.set(this.run.bytes.subarray(RUN.SYNC_SREGS, RUN.SYNC_SREGS + SREGS.SIZE));
      return out;
    }
    check("ioctl(KVM_GET_SREGS)", libc().ioctl_buf(this.#fd, KVM.GET_SREGS, out));
    return out;
  }

  /**
   * `KVM_SET_SREGS` from a 312-byte `struct kvm_sregs`.
   *
   * @example
   * ```ts
   * // vcpu.setSregs(sregs);
   * ```
   */
  setSregs(sregs: Uint8Array): void {
    check("ioctl(KVM_SET_SREGS)", libc().ioctl_buf(this.#fd, KVM.SET_SREGS, sregs));
  }

  /**
   * `KVM_SET_XSAVE` with every state component in its initial state (XSTATE_BV = 0; FCW 0x37f, MXCSR 0x1f80):
   * x87, SSE, AVX and anything else XSAVE covers. On PVM hosts a CPL3 guest can use AVX even though its
   * CR4 does not enable XSAVE, so resetting only x87/SSE (`KVM_SET_FPU`) would let the upper halves of the
   * vector registers pass from one guest to the next.
   *
   * @example
   * ```ts
   * // vcpu.resetExtendedState(4096);
   * ```
   */
  resetExtendedState(xsaveSize: number): void {
    const area = new Uint8Array(Math.max(4096, xsaveSize));
    const v = new DataView(area.buffer);
    v.setUint16(0, 0x37f, true);
    v.setUint32(24, 0x1f80, true);
    check("ioctl(KVM_SET_XSAVE)", libc().ioctl_buf(this.#fd, KVM.SET_XSAVE, area));
  }

  /**
   * The vCPU's XSAVE image, `xsaveSize` bytes (`KVM_GET_XSAVE`, or `KVM_GET_XSAVE2` when the host's image
   * is bigger than the 4096 bytes `struct kvm_xsave` declares). The legacy area (the FXSAVE layout of
   * x87/SSE) is its first 512 bytes; XSTATE_BV is the u64 at 512.
   *
   * @example
   * ```ts
   * // const image = vcpu.getXsave(Kvm.get().xsaveSize);
   * ```
   */
  getXsave(xsaveSize: number): Uint8Array {
    const area = new Uint8Array(Math.max(4096, xsaveSize));
    const request = area.length > 4096 ? KVM.GET_XSAVE2 : KVM.GET_XSAVE;
    check("ioctl(KVM_GET_XSAVE)", libc().ioctl_buf(this.#fd, request, area));
    return area;
  }

  /**
   * `KVM_SET_XSAVE` from a whole XSAVE image (as {@linkcode getXsave} returns it).
   *
   * @example
   * ```ts
   * // vcpu.setXsave(image);
   * ```
   */
  setXsave(image: Uint8Array): void {
    check("ioctl(KVM_SET_XSAVE)", libc().ioctl_buf(this.#fd, KVM.SET_XSAVE, image));
  }

  /**
   * `KVM_SET_REGS` from a 144-byte `struct kvm_regs`.
   *
   * @example
   * ```ts
   * // vcpu.setRegs(new Uint8Array(144));
   * ```
   */
  setRegs(regs: Uint8Array): void {
    check("ioctl(KVM_SET_REGS)", libc().ioctl_buf(this.#fd, KVM.SET_REGS, regs));
  }

  /**
   * Puts every piece of vCPU state that only privileged guest code can change back to its reset value:
   * debug registers (`KVM_SET_DEBUGREGS`), the MSRs of {@linkcode RESET_MSRS} (`KVM_SET_MSRS`), XCR0
   * (`KVM_SET_XCRS`) and pending events (`KVM_SET_VCPU_EVENTS`). Returns false when KVM refused part of it.
   *
   * @example
   * ```ts
   * // if (!vcpu.resetPrivilegedState()) closeInsteadOfPooling();
   * ```
   */
  resetPrivilegedState(): boolean {
    const c = libc();
    const dr = new Uint8Array(128);
    const drv = new DataView(dr.buffer);
    drv.setBigUint64(32, RESET_DR6, true);
    drv.setBigUint64(40, RESET_DR7, true);
    let ok = c.ioctl_buf(this.#fd, KVM.SET_DEBUGREGS, dr) === 0;
    const msrs = new Uint8Array(8 + 16 * RESET_MSRS.length);
    const mv = new DataView(msrs.buffer);
    mv.setUint32(0, RESET_MSRS.length, true);
    RESET_MSRS.forEach(([index, value], i) => {
      mv.setUint32(8 + i * 16, index, true);
      mv.setBigUint64(16 + i * 16, value, true);
    });
    ok = c.ioctl_buf(this.#fd, KVM.SET_MSRS, msrs) === RESET_MSRS.length && ok;
    const xcrs = new Uint8Array(392);
    const xv = new DataView(xcrs.buffer);
    xv.setUint32(0, 1, true); // one XCR: XCR0 = 1 (x87 only), its reset value
    xv.setBigUint64(16, 1n, true);
    ok = c.ioctl_buf(this.#fd, KVM.SET_XCRS, xcrs) === 0 && ok;
    ok = c.ioctl_buf(this.#fd, KVM.SET_VCPU_EVENTS, new Uint8Array(64)) === 0 && ok;
    return ok;
  }

  /**
   * Lets KVM finish an exit the host did not complete (an `in`, string I/O, MMIO), which it would otherwise
   * do at the next `KVM_RUN` and so overwrite registers staged for a restore: one `KVM_RUN` with
   * `immediate_exit` set, which completes the pending step and returns EINTR without running the guest.
   *
   * @example
   * ```ts
   * // vcpu.completePendingExit();
   * ```
   */
  completePendingExit(): void {
    const v = this.run.view;
    v.setUint8(RUN.IMMEDIATE_EXIT, 1);
    v.setBigUint64(RUN.DIRTY_REGS, 0n, true);
    try {
      libc().ioctl(this.#fd, KVM.RUN, 0n); // -1/EINTR expected
    } finally {
      v.setUint8(RUN.IMMEDIATE_EXIT, 0);
    }
  }

  /**
   * `KVM_SET_SIGNAL_MASK`: the thread's signal mask while inside `KVM_RUN` (8-byte kernel sigset).
   *
   * @example
   * ```ts
   * // vcpu.setSignalMask(new Uint8Array(8));
   * ```
   */
  setSignalMask(sigset: Uint8Array): void {
    const arg = new Uint8Array(12);
    new DataView(arg.buffer).setUint32(0, 8, true);
    arg.set(sigset.subarray(0, 8), 4);
    check("ioctl(KVM_SET_SIGNAL_MASK)", libc().ioctl_buf(this.#fd, KVM.SET_SIGNAL_MASK, arg));
  }

  /**
   * Unmaps `kvm_run` and closes the fd.
   *
   * @example
   * ```ts
   * // vcpu.close();
   * ```
   */
  close(): void {
    if (this.#fd < 0) return;
    this.run.close();
    untrackFd(this.#fd);
    libc().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
