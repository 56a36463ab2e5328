/**
 * The KVM backend: {@linkcode VirtualMachine} over a VM fd and one vCPU fd, idle VMs pooled per thread,
 * time limits and interrupts through SIGUSR2 (see `signals.ts`).
 *
 * @module
 */
import {
  DIRTY_RING,
  KVM_CAP,
  KVM_EXIT,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_SYNC_X86_REGS,
  REGS,
  RUN,
} from "../../ffi/linux/kvm.ts";
import { Mapping, osMemory } from "../memory/mapping.ts";
import { restoreLibrary, RING, setU64 } from "../memory/restore_library.ts";
import { mapShared } from "../memory/posix/os_memory.ts";
import { libc } from "../../ffi/linux/libc.ts";
import { Hypervisor, type Sregs } from "../../format/mod.ts";
import {
  type Backend,
  type EntryRegisters,
  type GuestMemoryRange,
  type GuestWait,
  type InterruptTarget,
  type MemoryStaging,
  REGISTER_NAMES,
  type Registers,
  type VcpuThread,
  type VirtualMachine,
  type VmExit,
} from "../backend/backend.ts";
import { FXSAVE } from "../debug/registers.ts";
import { ErrnoError } from "../../ffi/linux/errno.ts";
import { RunThread, tscTicksPerMs, WAIT } from "./run_thread.ts";
import { resetThreadSegments } from "./host_segments.ts";
import { Kvm } from "./kvm.ts";
import { IN_WORKER, SIGUSR2, ThreadSignals } from "./signals.ts";
import { sregsFromKvm, sregsToKvm } from "./sregs.ts";
import { RUN_INTERRUPTED, type VcpuFd } from "./vcpu_fd.ts";
import type { VmFd } from "./vm_fd.ts";

/** snapvm uses one memslot per VM: persistent region, guard page and scratch region in one host range. */
const SLOT = 0;

/** The bitmap given when no pages are recorded (with a page count of 0): collecting only marks entries. */
const NO_PAGES = new BigUint64Array(1);

/**
 * Idle VMs with their vCPU, kept for reuse by this thread (module instances are per Worker, so per thread).
 * Creating a VM and its vCPU and closing them costs ~0.3 ms here; a pooled pair costs two memslot updates
 * and a register reset. A VM goes back to the pool only after a clean life (no run ended in an error) and
 * with its x87/SSE/AVX state reset; the next sandbox sets every other register a CPL3 guest can change.
 */
const pool: KvmVm[] = [];
const POOL_SIZE = 4;

/** VMs of this thread handed out and not released yet. */
let live = 0;

/** The VM this thread ran last (module state is per thread), and the entry of it this thread ran. */
let lastOnThread: KvmVm | undefined;
let lastEntryOnThread = 0;

const WAITS: GuestWait[] = [];
WAITS[WAIT.DEADLINE] = "deadline";
WAITS[WAIT.WORD] = "word";
WAITS[WAIT.FINISHED] = "finished";
WAITS[WAIT.SLICE] = "slice";

const INTERRUPTED: VmExit = Object.freeze({ kind: "interrupted" });
const HALT: VmExit = Object.freeze({ kind: "halt" });
const SHUTDOWN: VmExit = Object.freeze({ kind: "shutdown" });

/** Encoded `struct kvm_sregs` per neutral `Sregs` object: the ABI's registers are encoded once. */
const encodedSregs = new WeakMap<Sregs, Uint8Array>();

/** `s` as a `struct kvm_sregs`, encoded once per object. */
function encodedSregsOf(s: Sregs): Uint8Array {
  let bytes = encodedSregs.get(s);
  if (bytes === undefined) encodedSregs.set(s, bytes = sregsToKvm(s));
  return bytes;
}

/**
 * One KVM VM with one vCPU.
 *
 * @example
 * ```ts ignore
 * import { kvmBackend } from "./backend.ts";
 * const vm = kvmBackend.createVm();
 * vm.release(true);
 * ```
 */
export class KvmVm implements VirtualMachine {
  readonly backend = "kvm" as const;
  readonly #vm: VmFd;
  readonly #vcpu: VcpuFd;
  readonly #signals: ThreadSignals;
  readonly #run: DataView;
  #memory: GuestMemoryRange | undefined;
  #tracking = false;
  /** KVM completes the last exit at the next KVM_RUN (an `in`, string I/O or MMIO left unanswered). */
  #pending = false;
  #dirty: BigUint64Array | undefined;
  /**
   * Counts entries (init, restore, a new sandbox), after each of which no selector may survive into the
   * guest: every thread that runs the vCPU resets its selectors when it has not run this entry yet.
   */
  #entry = 1;
  /** The run thread, once started, and the entry it last ran. */
  #thread: RunThread | undefined;
  #threadEntry = 0;
  #threaded: VcpuThread | undefined;
  /** Set once `release()` ran (a pooled VM is handed out again unreleased). */
  #released = false;

  constructor(vm: VmFd, vcpu: VcpuFd, signals: ThreadSignals, ring: Mapping | undefined) {
    this.#vm = vm;
    this.#vcpu = vcpu;
    this.#signals = signals;
    this.#run = vcpu.run.view;
    this.#ring = ring;
    this.#ringView = ring?.view;
    if (ring !== undefined) {
      this.#ringState[RING.RING] = ring.address;
      this.#ringState[RING.ENTRIES] = BigInt(ring.size / DIRTY_RING.ENTRY);
      this.#ringState[RING.SLOT] = BigInt(SLOT);
    }
  }

  /** The vCPU's dirty ring (KVM_CAP_DIRTY_LOG_RING), when the host has one; else the dirty bitmap is used. */
  readonly #ring: Mapping | undefined;
  readonly #ringView: DataView | undefined;
  /** The ring's address and entry count, the memslot, the entries consumed so far (see {@linkcode RING}). */
  readonly #ringState = new BigUint64Array(RING.WORDS);
  readonly #ringWords = new Uint32Array(this.#ringState.buffer);
  /** The pages recorded since tracking started or the last clear, one bit per page (ring mode). */
  #sticky: BigUint64Array | undefined;

  /** Sets the sticky bitmap and the page count collections record into it (0 without one). */
  #setSticky(bitmap: BigUint64Array | undefined): void {
    this.#sticky = bitmap;
    setU64(this.#ringWords, RING.PAGES, bitmap === undefined ? 0 : bitmap.length * 64);
  }

  /** Entries collected and not yet reset (counted by both collections, the native one in C). */
  get #ringCollected(): number {
    return this.#ringWords[2 * RING.COLLECTED];
  }

  set #ringCollected(n: number) {
    setU64(this.#ringWords, RING.COLLECTED, n);
  }

  /** The dirty ring's state while tracking in ring mode: `takeDirtyPages(true)` leaves its new entries. */
  get dirtyRing(): BigUint64Array | undefined {
    return this.#sticky !== undefined ? this.#ringState : undefined;
  }

  get tracking(): boolean {
    return this.#tracking;
  }

  get interruptTarget(): InterruptTarget {
    return { backend: "kvm", tid: this.#signals.tid };
  }

  mapMemory(memory: GuestMemoryRange): void {
    this.#memory = memory;
    this.#tracking = false;
    this.#dirty = undefined;
    this.#setSticky(undefined);
    this.#vm.setUserMemoryRegion(SLOT, 0, 0n, memory.size, memory.address);
  }

  memoryReplaced(): void {
    // KVM follows changes of the host mapping through MMU notifiers: nothing to do.
  }

  readonly tracksScratch = true;

  startDirtyTracking(): void {
    const m = this.#mapped();
    if (this.#tracking) return;
    // Every page of the slot is logged (the scratch region too: restore zeroes only the scratch pages the
    // guest wrote). KVM write-protects the slot now; each page's first write is recorded.
    this.#vm.setUserMemoryRegion(SLOT, KVM_MEM_LOG_DIRTY_PAGES, 0n, m.size, m.address);
    this.#tracking = true;
    if (this.#ring !== undefined) this.#setSticky(new BigUint64Array(Math.ceil(m.size / 4096 / 64)));
  }

  /**
   * `KVM_GET_DIRTY_LOG`. With `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` it only reads the log: bits stay set and
   * their pages writable until `KVM_CLEAR_DIRTY_LOG`, so a page the guest writes on every call costs one
   * write-protection fault per sandbox instead of one per call (2.5 µs each on PVM), and a restore one ioctl.
   */
  takeDirtyPages(leaveRing = false): BigUint64Array {
    const m = this.#mapped();
    if (this.#sticky !== undefined) {
      if (!leaveRing) this.#collectRing();
      return this.#sticky;
    }
    this.#dirty ??= new BigUint64Array(Math.ceil(m.size / 4096 / 64));
    this.#vm.getDirtyLog(SLOT, this.#dirty);
    return this.#dirty;
  }

  /**
   * In ring mode `KVM_RESET_DIRTY_RINGS` re-protects every collected page, not only those in `bitmap`:
   * tracking a page again is always safe (its next write is recorded once more).
   */
  clearDirtyPages(bitmap: BigUint64Array, pages: number): void {
    const m = this.#mapped();
    if (this.#sticky !== undefined) {
      this.#collectRing();
      this.#resetRing();
      this.#sticky.fill(0n);
      return;
    }
    // KVM wants a multiple of 64 pages, or a range that ends at the end of the memslot.
    this.#vm.clearDirtyLog(SLOT, 0, Math.min(Math.ceil(pages / 64) * 64, m.size / 4096), bitmap);
  }

  /**
   * Moves the dirty ring's new entries into the sticky bitmap and marks them collected: a read of shared
   * memory, no system call. KVM publishes an entry's flags last (x86 keeps stores in order), so an entry
   * whose flags say DIRTY has its slot and offset in place.
   */
  #collectRing(): void {
    const sticky = this.#sticky ?? NO_PAGES, state = this.#ringState;
    const native = restoreLibrary();
    if (native !== undefined) {
      // The same loop in C (vm/memory/_restore_pages.c): no BigInt per entry, no DataView.
      native.collectDirtyRing(state, sticky);
      return;
    }
    const v = this.#ringView!, entries = v.byteLength / DIRTY_RING.ENTRY;
    const pages = this.#sticky === undefined ? 0 : sticky.length * 64;
    let fetch = Number(state[RING.FETCH]);
    for (;;) {
      const at = (fetch % entries) * DIRTY_RING.ENTRY;
      if ((v.getUint32(at + DIRTY_RING.FLAGS, true) & DIRTY_RING.F_DIRTY) === 0) break;
      if (v.getUint32(at + DIRTY_RING.SLOT, true) === SLOT) {
        const page = Number(v.getBigUint64(at + DIRTY_RING.OFFSET, true));
        if (page < pages) sticky[page >>> 6] |= 1n << BigInt(page & 63);
      }
      v.setUint32(at + DIRTY_RING.FLAGS, DIRTY_RING.F_RESET, true);
      fetch++;
      this.#ringCollected++;
    }
    state[RING.FETCH] = BigInt(fetch);
  }

  /** `KVM_RESET_DIRTY_RINGS` for the collected entries: their pages are tracked again, the slots reused. */
  #resetRing(): void {
    if (this.#ringCollected === 0) return;
    this.#vm.resetDirtyRings();
    this.#ringCollected = 0;
  }

  stageEntryInMemory(regs: EntryRegisters, sregs: Sregs): MemoryStaging {
    if (this.#pending) this.#completePendingExit();
    this.#entry++; // a new entry: run() resets the thread's selectors before it
    return this.#vcpu.entryStaging(regs, encodedSregsOf(sregs));
  }

  setEntryRegisters(r: EntryRegisters): void {
    if (this.#pending) this.#completePendingExit();
    this.#vcpu.stageRegs(r);
    this.#entry++;
  }

  run(): VmExit {
    // See host_segments.ts: on PVM the guest's data selectors are the thread's, shared by every guest it runs.
    if (lastOnThread !== this || lastEntryOnThread !== this.#entry) {
      resetThreadSegments();
      lastOnThread = this;
      lastEntryOnThread = this.#entry;
    }
    let reason = this.#vcpu.runOnce();
    while (reason === KVM_EXIT.DIRTY_RING_FULL) {
      // Collect into the sticky bitmap (which keeps the pages), recycle the entries, go on.
      this.#collectRing();
      this.#resetRing();
      reason = this.#vcpu.runOnce();
    }
    return this.#decode(reason);
  }

  vcpuThread(): VcpuThread {
    return this.#threaded ??= this.#makeVcpuThread();
  }

  #makeVcpuThread(): VcpuThread {
    const thread = this.#startThread();
    return {
      interruptTarget: { backend: "kvm", tid: thread.tid },
      get busy() {
        return thread.busy;
      },
      start: (deadline, callState) => {
        // The run thread is a thread of its own: it resets its selectors for every entry it has not run.
        const reset = this.#threadEntry !== this.#entry;
        this.#threadEntry = this.#entry;
        thread.post(reset, deadline, callState);
      },
      finished: () => thread.finished(),
      finishedSync: () => thread.finishedSync(),
      exit: () => {
        const r = thread.result();
        if (r === -4 || r === -11) return this.#decode(RUN_INTERRUPTED); // EINTR, EAGAIN
        if (r < 0) throw new ErrnoError("ioctl(KVM_RUN)", -r);
        return this.#decode(this.#run.getUint32(RUN.EXIT_REASON, true));
      },
      stop: () => thread.kick(),
      waitWord: (words, index, seen, deadline, spinUs, sliceMs) =>
        WAITS[thread.waitWord(words, index, seen, deadline, spinUs, sliceMs)],
      waitWordAsync: async (words, index, seen, deadline, spinUs, sliceMs) =>
        WAITS[await thread.waitWordAsync(words, index, seen, deadline, spinUs, sliceMs)],
      get ticksPerMs() {
        return tscTicksPerMs();
      },
    };
  }

  #startThread(): RunThread {
    const thread = RunThread.start({ vcpuFd: this.#vcpu.fd, signal: SIGUSR2 });
    this.#thread = thread;
    return thread;
  }

  /** Decodes what `KVM_RUN` left in `kvm_run`. */
  #decode(reason: number): VmExit {
    const v = this.#run;
    if (reason === KVM_EXIT.IO) {
      const write = v.getUint8(RUN.IO_DIRECTION) === 1;
      const size = v.getUint8(RUN.IO_SIZE);
      const string = v.getUint32(RUN.IO_COUNT, true) !== 1;
      this.#pending = !write || string;
      const value = write && !string && size === 4
        ? v.getUint32(Number(v.getBigUint64(RUN.IO_DATA_OFFSET, true)), true)
        : 0;
      return { kind: "io", port: v.getUint16(RUN.IO_PORT, true), size, write, string, value };
    }
    this.#pending = false;
    switch (reason) {
      case KVM_EXIT.DIRTY_RING_FULL:
        // Only from a run thread (run() collects in its own loop): collect, recycle, and re-enter as after a
        // signal.
        this.#collectRing();
        this.#resetRing();
        return INTERRUPTED;
      case RUN_INTERRUPTED:
      case KVM_EXIT.INTR:
        return INTERRUPTED;
      case KVM_EXIT.MMIO:
        this.#pending = true;
        return {
          kind: "mmio",
          gpa: v.getBigUint64(RUN.MMIO_PHYS_ADDR, true),
          write: v.getUint8(RUN.MMIO_IS_WRITE) !== 0,
        };
      case KVM_EXIT.HLT:
        return HALT;
      case KVM_EXIT.SHUTDOWN:
        return SHUTDOWN;
      case KVM_EXIT.FAIL_ENTRY:
        return {
          kind: "failed",
          reason: `VM entry failed (hardware reason 0x${
            v.getBigUint64(RUN.FAIL_ENTRY_REASON, true).toString(16)
          })`,
        };
      case KVM_EXIT.INTERNAL_ERROR:
        return {
          kind: "failed",
          reason: `KVM internal error (suberror ${v.getUint32(RUN.INTERNAL_SUBERROR, true)})`,
        };
      default:
        return { kind: "failed", reason: `unexpected KVM exit ${reason}` };
    }
  }

  instructionPointer(): bigint {
    return new DataView(this.#vcpu.getRegs().buffer).getBigUint64(REGS.RIP, true);
  }

  getRegisters(): Registers {
    const v = new DataView(this.#vcpu.getRegs().buffer);
    const out = {} as Registers;
    REGISTER_NAMES.forEach((name, i) => out[name] = v.getBigUint64(i * 8, true));
    return out;
  }

  setRegisters(r: Registers): void {
    if (this.#pending) this.#completePendingExit();
    const bytes = new Uint8Array(REGS.SIZE);
    const v = new DataView(bytes.buffer);
    REGISTER_NAMES.forEach((name, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, r[name]), true));
    // KVM_SET_REGS, not kvm_run.s.regs: a register set staged earlier must not override these (special
    // registers staged earlier still apply).
    const dirty = this.#run.getBigUint64(RUN.DIRTY_REGS, true);
    this.#run.setBigUint64(RUN.DIRTY_REGS, dirty & ~KVM_SYNC_X86_REGS, true);
    this.#vcpu.setRegs(bytes);
  }

  getSregs(): Sregs {
    return sregsFromKvm(this.#vcpu.getSregs());
  }

  setSregs(s: Sregs): void {
    const bytes = encodedSregsOf(s);
    if (this.#pending) this.#completePendingExit();
    // Through kvm_run.s.sregs: KVM loads them at the next KVM_RUN, saving a vCPU ioctl (~8 µs on PVM).
    this.#vcpu.stageSregs(bytes);
  }

  getFpuState(): Uint8Array {
    return this.#vcpu.getXsave(Kvm.get().xsaveSize).slice(0, FXSAVE.SIZE);
  }

  setFpuState(image: Uint8Array): void {
    if (image.length !== FXSAVE.SIZE) {
      throw new RangeError(`FXSAVE image has ${image.length} bytes, expected ${FXSAVE.SIZE}`);
    }
    if (this.#pending) this.#completePendingExit();
    const area = this.#vcpu.getXsave(Kvm.get().xsaveSize);
    area.set(image, 0);
    // XSTATE_BV bits 0 (x87) and 1 (SSE): a component whose bit is clear is loaded in its initial state,
    // whatever the legacy area holds.
    area[FXSAVE.SIZE] |= 0b11;
    this.#vcpu.setXsave(area);
  }

  resetVcpu(full: boolean): void {
    if (this.#pending) this.#completePendingExit();
    // x87/SSE/AVX state is reset by the guest's entry code at every entry (vm/machine/guest_vm.ts); after a
    // failed run everything else too, and the extended state once more for good measure.
    if (full) {
      this.#vcpu.resetExtendedState(Kvm.get().xsaveSize);
      this.#vcpu.resetPrivilegedState();
    }
  }

  armTimeout(ms: number): number {
    return this.#signals.arm(ms);
  }

  disarmTimeout(): void {
    this.#signals.disarm();
  }

  acknowledgeInterrupt(): void {
    this.#signals.consume();
  }

  release(reusable: boolean): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#thread?.busy) {
      // Its owner parks it first; if not, whatever state the guest was left in, it is not reused.
      this.#thread.kick();
      this.#thread.finishedSync();
      reusable = false;
    }
    this.#memory = undefined;
    live--;
    // A Worker's end cannot be observed, so a Worker keeps nothing idle: once its last VM is released the
    // thread's pool, keeper VM, /dev/kvm fd and timer go too (the next VM creates them again).
    if (IN_WORKER && live === 0) {
      this.destroy();
      kvmBackend.shutdownThread();
      return;
    }
    if (reusable && pool.length < POOL_SIZE) {
      try {
        if (this.#ring !== undefined) {
          this.#setSticky(undefined);
          this.#collectRing();
          this.#resetRing();
        }
        this.#vm.setUserMemoryRegion(SLOT, 0, 0n, 0, 0n);
        if (this.#pending) this.#completePendingExit();
        this.#released = false;
        pool.push(this);
        return;
      } catch {
        // fall through to closing it
      }
    }
    this.destroy();
  }

  /** Ends the run thread, closes the vCPU and VM fds. */
  destroy(): void {
    this.#thread?.stop();
    this.#thread = this.#threaded = undefined;
    this.#ring?.close();
    this.#vcpu.close();
    this.#vm.close();
  }

  #mapped(): GuestMemoryRange {
    if (this.#memory === undefined) throw new Error("No guest memory is mapped");
    return this.#memory;
  }

  /**
   * One `KVM_RUN` with `immediate_exit`: KVM finishes the step it owes the last exit (writing RAX for an
   * `in`, for example) without running the guest, so it cannot land on registers staged afterwards.
   */
  #completePendingExit(): void {
    this.#vcpu.completePendingExit();
    this.#signals.consume();
    this.#pending = false;
  }
}

/**
 * Bytes of a vCPU's dirty ring (16-byte entries): 4096 pages can be written between two collections before
 * KVM exits to have the ring emptied.
 */
const RING_BYTES = 64 * 1024;

function newVm(kvm: Kvm, signals: ThreadSignals): KvmVm {
  const vm = kvm.createVm();
  let ring: Mapping | undefined;
  try {
    // A dirty ring (where the host has one) lets restore read the written pages from shared memory instead
    // of a KVM_GET_DIRTY_LOG ioctl. It must be enabled before the vCPU exists.
    const useRing = kvm.checkExtension(KVM_CAP.DIRTY_LOG_RING) >= RING_BYTES;
    if (useRing) vm.enableCap(KVM_CAP.DIRTY_LOG_RING, BigInt(RING_BYTES));
    else vm.enableCap(KVM_CAP.MANUAL_DIRTY_LOG_PROTECT2, 1n);
    const vcpu = vm.createVcpu(0);
    try {
      vcpu.setSignalMask(signals.runMask);
      if (useRing) {
        ring = Mapping.adopt(
          mapShared(vcpu.fd, RING_BYTES, DIRTY_RING.PAGE_OFFSET * 4096),
          RING_BYTES,
          osMemory.unmapView,
        );
      }
      return new KvmVm(vm, vcpu, signals, ring);
    } catch (e) {
      ring?.close();
      vcpu.close();
      throw e;
    }
  } catch (e) {
    vm.close();
    throw e;
  }
}

/**
 * The KVM backend.
 *
 * @example
 * ```ts ignore
 * import { kvmBackend } from "./backend.ts";
 * console.log(kvmBackend.name); // "kvm"
 * ```
 */
export const kvmBackend: Backend = {
  name: "kvm",
  hypervisor: Hypervisor.KVM,

  createVm(): VirtualMachine {
    const kvm = Kvm.get();
    const vm = pool.pop() ?? newVm(kvm, ThreadSignals.get());
    live++;
    return vm;
  },

  interrupt(target: InterruptTarget): boolean {
    if (target.backend !== "kvm" || typeof target.tid !== "number") return false;
    // The process is always this one: a handle can only stop a thread of the process that made it.
    return libc().tgkill(libc().getpid(), target.tid, SIGUSR2) === 0;
  },

  shutdownThread(): void {
    for (const vm of pool.splice(0)) vm.destroy();
    lastOnThread = undefined;
    ThreadSignals.shutdown();
    Kvm.shutdown();
  },
};
