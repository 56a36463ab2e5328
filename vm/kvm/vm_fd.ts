/**
 * A KVM VM file descriptor.
 *
 * @module
 */
import { check } from "../../ffi/linux/errno.ts";
import { libc } from "../../ffi/linux/libc.ts";
import { trackFd, untrackFd } from "../../ffi/linux/reaper.ts";
import { KVM } from "../../ffi/linux/kvm.ts";
import type { Kvm } from "./kvm.ts";
import { VcpuFd } from "./vcpu_fd.ts";

/**
 * Wrapper of a VM fd (from `KVM_CREATE_VM`). VM-fd ioctls are cheap (~0.2 µs); vCPU ioctls are not.
 *
 * @example
 * ```ts
 * import { Kvm } from "./kvm.ts";
 * using vm = Kvm.get().createVm();
 * using vcpu = vm.createVcpu(0);
 * ```
 */
export class VmFd {
  #fd: number;
  readonly #kvm: Kvm;
  readonly #region = new Uint8Array(32);
  readonly #regionView = new DataView(this.#region.buffer);
  readonly #dirtyLog = new Uint8Array(16);
  readonly #dirtyLogView = new DataView(this.#dirtyLog.buffer);
  readonly #clearLog = new Uint8Array(24);
  readonly #clearLogView = new DataView(this.#clearLog.buffer);

  /** Wraps an open VM fd (tracked by the thread's reaper, see `ffi/linux/reaper.ts`); the object owns it. */
  constructor(fd: number, kvm: Kvm) {
    this.#fd = fd;
    this.#kvm = kvm;
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * `KVM_CREATE_VCPU`, then maps its `kvm_run` area.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * using vm = Kvm.get().createVm();
   * using vcpu = vm.createVcpu(0);
   * ```
   */
  createVcpu(id: number): VcpuFd {
    const fd = trackFd(check("ioctl(KVM_CREATE_VCPU)", libc().ioctl(this.#fd, KVM.CREATE_VCPU, BigInt(id))));
    try {
      return new VcpuFd(fd, this.#kvm.vcpuMmapSize);
    } catch (e) {
      untrackFd(fd);
      libc().close(fd);
      throw e;
    }
  }

  /**
   * `KVM_SET_USER_MEMORY_REGION`: maps `size` bytes of host memory at `hostAddress` to guest-physical `gpa`
   * as `slot`. A size of 0 deletes the slot.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * import { Mapping } from "../memory/mapping.ts";
   * using vm = Kvm.get().createVm();
   * using mem = Mapping.anonymous(4096);
   * vm.setUserMemoryRegion(0, 0, 0n, 4096, mem.address);
   * ```
   */
  setUserMemoryRegion(slot: number, flags: number, gpa: bigint, size: number, hostAddress: bigint): void {
    const v = this.#regionView;
    v.setUint32(0, slot, true);
    v.setUint32(4, flags, true);
    v.setBigUint64(8, gpa, true);
    v.setBigUint64(16, BigInt(size), true);
    v.setBigUint64(24, hostAddress, true);
    check(
      "ioctl(KVM_SET_USER_MEMORY_REGION)",
      libc().ioctl_buf(this.#fd, KVM.SET_USER_MEMORY_REGION, this.#region),
    );
  }

  /**
   * `KVM_GET_DIRTY_LOG`: fills `bitmap` (one bit per page of the slot, 64-bit aligned length) with the pages
   * written since the last call, and resets the log (the pages are write-protected again).
   *
   * @example
   * ```ts
   * // vm.getDirtyLog(0, bitmap);
   * ```
   */
  getDirtyLog(slot: number, bitmap: BigUint64Array): void {
    const v = this.#dirtyLogView;
    v.setUint32(0, slot, true);
    v.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bitmap))), true);
    check("ioctl(KVM_GET_DIRTY_LOG)", libc().ioctl_buf(this.#fd, KVM.GET_DIRTY_LOG, this.#dirtyLog));
  }

  /**
   * `KVM_CLEAR_DIRTY_LOG`: write-protects again, and clears in the log, the pages whose bits are set in
   * `bitmap` (bit 0 = `firstPage`, a multiple of 64).
   *
   * @example
   * ```ts
   * // vm.clearDirtyLog(0, 0, 128, bitmap);
   * ```
   */
  clearDirtyLog(slot: number, firstPage: number, numPages: number, bitmap: BigUint64Array): void {
    const v = this.#clearLogView;
    v.setUint32(0, slot, true);
    v.setUint32(4, numPages, true);
    v.setBigUint64(8, BigInt(firstPage), true);
    v.setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bitmap))), true);
    check("ioctl(KVM_CLEAR_DIRTY_LOG)", libc().ioctl_buf(this.#fd, KVM.CLEAR_DIRTY_LOG, this.#clearLog));
  }

  /**
   * `KVM_RESET_DIRTY_RINGS`: write-protects again the pages of the dirty-ring entries marked collected and
   * frees those entries. Returns how many were reset.
   *
   * @example
   * ```ts
   * // vm.resetDirtyRings();
   * ```
   */
  resetDirtyRings(): number {
    return check("ioctl(KVM_RESET_DIRTY_RINGS)", libc().ioctl(this.#fd, KVM.RESET_DIRTY_RINGS, 0n));
  }

  /**
   * `KVM_ENABLE_CAP` on the VM with one argument.
   *
   * @example
   * ```ts
   * // vm.enableCap(168, 1n); // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
   * ```
   */
  enableCap(cap: number, arg0: bigint): void {
    const buf = new Uint8Array(104);
    const v = new DataView(buf.buffer);
    v.setUint32(0, cap, true);
    v.setBigUint64(8, arg0, true);
    check(`ioctl(KVM_ENABLE_CAP ${cap})`, libc().ioctl_buf(this.#fd, KVM.ENABLE_CAP, buf));
  }

  /**
   * Closes the VM fd. The kernel frees the VM once its vCPU fds are closed too.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * Kvm.get().createVm().close();
   * ```
   */
  close(): void {
    if (this.#fd < 0) return;
    untrackFd(this.#fd);
    libc().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
