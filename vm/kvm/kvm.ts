/**
 * The KVM system file descriptor (`/dev/kvm`), one per process (per Worker), opened on first use.
 *
 * @module
 */
import { check, checkRetrying, ErrnoError, errnoName, lastErrno } from "../../ffi/linux/errno.ts";
import { exhaustion } from "../resources.ts";
import { libc, O_CLOEXEC, O_RDWR } from "../../ffi/linux/libc.ts";
import { trackFd, untrackFd } from "../../ffi/linux/reaper.ts";
import { KVM, KVM_API_VERSION, KVM_CAP } from "../../ffi/linux/kvm.ts";
import { HypervisorUnavailableError } from "../errors.ts";
import { VmFd } from "./vm_fd.ts";
import type { VcpuFd } from "./vcpu_fd.ts";

const encoder = new TextEncoder();

/**
 * Wrapper of the `/dev/kvm` fd.
 *
 * Keeps one idle "keeper" VM with one vCPU alive for the life of the process: without any vCPU alive, every
 * `KVM_CREATE_VCPU` and VM close flips a kernel static key that rewrites kernel text with cross-CPU
 * interrupts (measured here: `KVM_CREATE_VCPU` 177 µs instead of 35 µs, VM close 374 µs instead of 186 µs).
 *
 * @example
 * ```ts
 * import { Kvm } from "./kvm.ts";
 * const kvm = Kvm.get();
 * console.log(kvm.vcpuMmapSize);
 * ```
 */
export class Kvm {
  /** The `/dev/kvm` fd. */
  readonly fd: number;
  /** Size of a vCPU's `kvm_run` mapping (`KVM_GET_VCPU_MMAP_SIZE`). */
  readonly vcpuMmapSize: number;
  /** Size of `struct kvm_xsave` (`KVM_CAP_XSAVE2`, at least 4096). */
  readonly xsaveSize: number;
  #keeper: { vm: VmFd; vcpu: VcpuFd } | undefined;

  private constructor(fd: number) {
    this.fd = fd;
    const api = libc().ioctl(fd, KVM.GET_API_VERSION, 0n);
    if (api !== KVM_API_VERSION) {
      untrackFd(fd);
      libc().close(fd);
      throw new HypervisorUnavailableError("kvm", `KVM API version is ${api}, expected ${KVM_API_VERSION}`);
    }
    this.vcpuMmapSize = check("ioctl(KVM_GET_VCPU_MMAP_SIZE)", libc().ioctl(fd, KVM.GET_VCPU_MMAP_SIZE, 0n));
    if (this.checkExtension(KVM_CAP.SYNC_REGS) <= 0) {
      untrackFd(fd);
      libc().close(fd);
      throw new HypervisorUnavailableError(
        "kvm",
        "KVM lacks KVM_CAP_SYNC_REGS, which snapvm's call path needs",
        "use Linux 4.16 or later",
      );
    }
    this.xsaveSize = Math.max(4096, this.checkExtension(KVM_CAP.XSAVE2));
  }

  /**
   * The process's KVM handle, opened on first call. Throws {@linkcode HypervisorUnavailableError} when
   * `/dev/kvm` cannot be opened.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * Kvm.get();
   * ```
   */
  static get(): Kvm {
    if (instance === undefined) {
      const fd = libc().open(encoder.encode("/dev/kvm\0"), O_RDWR | O_CLOEXEC, 0);
      if (fd < 0) throw unavailable(lastErrno());
      // In a Worker, its reaper closes it if the Worker ends first (ffi/linux/reaper.ts).
      instance = new Kvm(trackFd(fd));
    }
    return instance;
  }

  /**
   * `KVM_CHECK_EXTENSION`: > 0 when the capability is present.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * Kvm.get().checkExtension(74);
   * ```
   */
  checkExtension(cap: number): number {
    return Math.max(0, libc().ioctl(this.fd, KVM.CHECK_EXTENSION, BigInt(cap)));
  }

  /**
   * `KVM_CREATE_VM`: a new VM. Also makes sure the keeper VM exists.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * using vm = Kvm.get().createVm();
   * ```
   */
  createVm(): VmFd {
    if (this.#keeper === undefined) {
      const vm = this.#rawCreateVm();
      this.#keeper = { vm, vcpu: vm.createVcpu(0) };
    }
    return this.#rawCreateVm();
  }

  /**
   * Closes the keeper VM and `/dev/kvm` for this thread (a Worker that is done with VMs). Any later use
   * opens them again.
   *
   * @example
   * ```ts
   * import { Kvm } from "./kvm.ts";
   * Kvm.shutdown();
   * ```
   */
  static shutdown(): void {
    const k = instance;
    if (k === undefined) return;
    instance = undefined;
    k.#keeper?.vcpu.close();
    k.#keeper?.vm.close();
    k.#keeper = undefined;
    untrackFd(k.fd);
    libc().close(k.fd);
  }

  #rawCreateVm(): VmFd {
    const fd = checkRetrying("ioctl(KVM_CREATE_VM)", () => libc().ioctl(this.fd, KVM.CREATE_VM, 0n));
    return new VmFd(trackFd(fd), this);
  }
}

let instance: Kvm | undefined;

/** The error for a failed open of `/dev/kvm`, with what to do about it. */
function unavailable(errno: number): Error {
  const name = errnoName(errno);
  if (name === "EMFILE" || name === "ENFILE" || name === "ENOMEM") {
    return exhaustion(new ErrnoError("open(/dev/kvm)", errno)) as Error;
  }
  if (name === "ENOENT") {
    return new HypervisorUnavailableError(
      "kvm",
      "/dev/kvm does not exist",
      "enable virtualization (load kvm_intel or kvm_amd, or turn on nested virtualization)",
    );
  }
  if (name === "EACCES" || name === "EPERM") {
    return new HypervisorUnavailableError(
      "kvm",
      `no permission to open /dev/kvm (${name})`,
      "add the user to the 'kvm' group (or run as root)",
    );
  }
  return new HypervisorUnavailableError("kvm", `cannot open /dev/kvm (${name})`);
}
