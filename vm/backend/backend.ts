/**
 * The hypervisor backend interface: one VM with one vCPU, in snapvm's terms. Everything above this file
 * (the guest machine, sandboxes, snapshots) is written against it; everything below it (`vm/kvm/`,
 * `vm/whp/`) speaks one hypervisor's API. Modelled on Hyperlight's `VirtualMachine` trait: neutral exit and
 * register types, no hypervisor struct crosses this line.
 *
 * @module
 */
import type { Hypervisor, Sregs } from "../../format/mod.ts";

/**
 * Names of the backends snapvm has.
 *
 * @example
 * ```ts
 * import type { BackendName } from "./backend.ts";
 * const name: BackendName = "kvm";
 * console.log(name);
 * ```
 */
export type BackendName = "kvm" | "whp";

/**
 * Registers set at every entry into the guest (init, and the dispatch loop after a restore or a load): the
 * instruction pointer, a fresh stack, RFLAGS, and the first argument. Every other general-purpose register
 * is zeroed by the backend. A caller never changes an object after passing it, so a backend may keep its
 * encoding by identity (the same entry is staged on every restore).
 *
 * @example
 * ```ts
 * import type { EntryRegisters } from "./backend.ts";
 * const r: EntryRegisters = { rip: 0x200000n, rsp: 0x250000n, rflags: 2n, rdi: 0n };
 * console.log(r.rip);
 * ```
 */
export interface EntryRegisters {
  /** Instruction pointer. */
  rip: bigint;
  /** Stack pointer. */
  rsp: bigint;
  /** RFLAGS. */
  rflags: bigint;
  /** First argument (System V ABI). */
  rdi: bigint;
  /** R11: where the entry code jumps to (docs/ABI.md, "Entry"); 0 when absent. */
  r11?: bigint;
}

/**
 * The general-purpose registers of an x86-64 vCPU, for debuggers and core dumps.
 *
 * @example
 * ```ts
 * import { REGISTER_NAMES, type Registers } from "./backend.ts";
 * const r = Object.fromEntries(REGISTER_NAMES.map((n) => [n, 0n])) as Registers;
 * console.log(r.rip);
 * ```
 */
export type Registers = Record<typeof REGISTER_NAMES[number], bigint>;

/**
 * The general-purpose registers in `struct kvm_regs` order (rax … r15, rip, rflags).
 *
 * @example
 * ```ts
 * import { REGISTER_NAMES } from "./backend.ts";
 * console.log(REGISTER_NAMES.length); // 18
 * ```
 */
export const REGISTER_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;

/**
 * Why `run()` returned. I/O exits leave the instruction completed as far as the guest can tell: the next
 * `run()` resumes after it (the backend advances RIP where its hypervisor does not).
 *
 * @example
 * ```ts
 * import type { VmExit } from "./backend.ts";
 * const exit: VmExit = { kind: "io", port: 0xe0, size: 4, write: true, string: false, value: 0 };
 * console.log(exit.kind);
 * ```
 */
export type VmExit =
  | {
    /** A port access (`in`/`out`, possibly a string or `rep` form). */
    readonly kind: "io";
    /** Port number. */
    readonly port: number;
    /** Access width in bytes (1, 2 or 4). */
    readonly size: number;
    /** True for `out`. */
    readonly write: boolean;
    /** True for `ins`/`outs`, with or without `rep`. */
    readonly string: boolean;
    /** The value written by a non-string `out` (0 otherwise). */
    readonly value: number;
  }
  | {
    /** An access to guest-physical memory no memory is mapped at. */
    readonly kind: "mmio";
    /** The guest-physical address. */
    readonly gpa: bigint;
    /** True for a write. */
    readonly write: boolean;
  }
  | {
    /** `run()` was interrupted: a time limit or an interrupt target fired (or a stray signal). */
    readonly kind: "interrupted";
  }
  | {
    /** The vCPU executed `hlt`. */
    readonly kind: "halt";
  }
  | {
    /** Triple fault or an unrecoverable exception. */
    readonly kind: "shutdown";
  }
  | {
    /** The hypervisor could not run the vCPU, or reported something snapvm does not handle. */
    readonly kind: "failed";
    /** What the hypervisor said, for the error message. */
    readonly reason: string;
  };

/**
 * Data another thread (a Worker) needs to stop a running `run()` of one VM: structured-cloneable, so it can
 * travel with `postMessage`. The backend named in `backend` interprets the rest.
 *
 * @example
 * ```ts
 * import type { InterruptTarget } from "./backend.ts";
 * const t: InterruptTarget = { backend: "kvm", tid: 1234 };
 * console.log(t.backend);
 * ```
 */
export interface InterruptTarget {
  /** The backend that made it. */
  readonly backend: BackendName;
  /** KVM: the kernel thread id that runs the vCPU (the process is always the current one). */
  readonly tid?: number;
  /** WHP: the partition handle, as a number. */
  readonly partition?: bigint;
  /** WHP: the VM's control block, which makes a cancel from another thread safe against deletion. */
  readonly control?: SharedArrayBuffer;
}

/**
 * What {@linkcode VcpuThread.waitWord} saw: the watched word changed, the run finished, the deadline
 * passed, or the wait's time slice ran out (nothing happened yet).
 *
 * @example
 * ```ts
 * import type { GuestWait } from "./backend.ts";
 * const w: GuestWait = "word";
 * console.log(w);
 * ```
 */
export type GuestWait = "word" | "finished" | "deadline" | "slice";

/**
 * A VM's vCPU run on an OS thread of its own, so that a run never blocks the JavaScript thread: the owner
 * starts a run and waits for it (or for a word of guest memory that a guest polling a mailbox writes) with
 * or without blocking. Interrupt handles and time limits of the calls it runs signal that thread. Only the
 * JavaScript thread that owns the VM uses it.
 *
 * @example
 * ```ts ignore
 * const t = vm.vcpuThread();
 * t.start(Infinity, undefined);
 * await t.finished();
 * console.log(t.exit().kind);
 * ```
 */
export interface VcpuThread {
  /** Data another thread needs to interrupt the runs of this thread (see {@linkcode Backend.interrupt}). */
  readonly interruptTarget: InterruptTarget;
  /** True while a run started with {@linkcode VcpuThread.start} has not finished. */
  readonly busy: boolean;
  /**
   * Starts one run (until the guest's next exit) and returns at once. `deadline` (`performance.now()` time,
   * Infinity for none) ends the run with an `interrupted` exit once it passes; `callState` is the call's
   * interrupt-handle state (see `vm/interrupt_handle.ts`), whose kill also ends it.
   */
  start(deadline: number, callState: Int32Array | undefined): void;
  /** Resolves once the run has finished, without blocking the event loop. */
  finished(): Promise<void>;
  /** Blocks until the run has finished. */
  finishedSync(): void;
  /** The finished run's exit (read it once per run, before starting the next). */
  exit(): VmExit;
  /** Makes a busy run end soon with an `interrupted` exit (unless it ends for another reason first). */
  stop(): void;
  /**
   * Waits until `words[index]` (a view of guest memory the guest writes, such as its mailbox) differs from
   * `seen`, the run finishes, `deadline` (`performance.now()` time) passes, or `sliceMs` has gone by.
   * Spins for `spinUs` first, then sleeps in short steps.
   */
  waitWord(
    words: Int32Array,
    index: number,
    seen: number,
    deadline: number,
    spinUs: number,
    sliceMs: number,
  ): GuestWait;
  /** {@linkcode VcpuThread.waitWord} without blocking the event loop. */
  waitWordAsync(
    words: Int32Array,
    index: number,
    seen: number,
    deadline: number,
    spinUs: number,
    sliceMs: number,
  ): Promise<GuestWait>;
  /** The guest's time-stamp counter ticks per millisecond (its only clock). */
  readonly ticksPerMs: number;
}

/**
 * Host memory given to a VM: one page-aligned range, mapped at guest-physical 0. `guard` is a page range
 * inside it that must stay unmapped for the guest (the stack guard), `tracked` the first pages whose writes
 * dirty tracking records (the persistent region).
 *
 * @example
 * ```ts
 * import type { GuestMemoryRange } from "./backend.ts";
 * const r: GuestMemoryRange = { address: 0x7f0000000000n, size: 3 * 4096, guard: { offset: 4096, size: 4096 }, trackedPages: 1 };
 * console.log(r.size);
 * ```
 */
export interface GuestMemoryRange {
  /** Host address of the range. */
  readonly address: bigint;
  /** Its size in bytes (a page multiple). */
  readonly size: number;
  /** A hole for the guest: backends that map in pieces leave it out; KVM relies on the host's PROT_NONE. */
  readonly guard: { readonly offset: number; readonly size: number };
  /** How many pages from guest-physical 0 dirty tracking covers. */
  readonly trackedPages: number;
}

/**
 * One VM with one vCPU. Not thread-safe: one thread drives it, except for the interrupt target. A VM comes
 * from {@linkcode Backend.createVm}, possibly reused from a pool, always in the ABI's reset state with no
 * memory mapped.
 *
 * @example
 * ```ts ignore
 * import { backend } from "./select.ts";
 * const vm = backend().createVm();
 * vm.release(true);
 * ```
 */
/**
 * Registers staged as plain memory (host addresses as numbers): copy `length` bytes from `from` to `to`, then
 * OR `flags` into the 32-bit word at `flagsAt`. See `VirtualMachine.stageEntryInMemory`.
 *
 * @example
 * ```ts
 * import type { MemoryStaging } from "./backend.ts";
 * const s: MemoryStaging = { to: 0x1000, from: 0x2000, length: 456, flagsAt: 0x3000, flags: 3 };
 * console.log(s.length);
 * ```
 */
export interface MemoryStaging {
  /** Where the register block goes. */
  readonly to: number;
  /** The encoded block. */
  readonly from: number;
  /** Its length in bytes. */
  readonly length: number;
  /** The word that says what was staged. */
  readonly flagsAt: number;
  /** The bits to set in it. */
  readonly flags: number;
}

export interface VirtualMachine {
  /** The backend this VM belongs to. */
  readonly backend: BackendName;

  /** Maps `memory` at guest-physical 0, replacing any earlier mapping; dirty tracking starts off. */
  mapMemory(memory: GuestMemoryRange): void;

  /**
   * The host pages behind `[offset, offset + size)` of the mapped memory were replaced in place (a new
   * copy-on-write view of another snapshot). KVM follows host mappings by itself; backends that pin host
   * pages map the range again. Dirty tracking keeps its state.
   */
  memoryReplaced(offset: number, size: number): void;

  /** Starts recording which pages the guest writes (all set bits clear). Idempotent. */
  startDirtyTracking(): void;

  /** True once {@linkcode startDirtyTracking} ran for the current mapping. */
  readonly tracking: boolean;

  /**
   * True when the backend records writes to every page of the mapping (the scratch region too); otherwise
   * only to the first `memory.trackedPages`.
   */
  readonly tracksScratch: boolean;

  /**
   * The pages written since tracking started, one bit per page from guest-physical 0 (bit `p % 64` of word
   * `p / 64`). Bits stay set until {@linkcode clearDirtyPages} clears them, and a page with its bit set is
   * not tracked again until then: writing it costs the guest nothing more. The array is reused. With
   * `leaveRing`, pages still in {@linkcode dirtyRing} are left for the caller to collect into the array.
   */
  takeDirtyPages(leaveRing?: boolean): BigUint64Array;

  /**
   * A KVM dirty ring whose new entries the caller may collect into `takeDirtyPages(true)`'s array itself, in
   * the same native call that restores the pages (state layout: `RING` of `vm/memory/restore_library.ts`);
   * undefined when the backend has none (it collects whatever it has in `takeDirtyPages()`).
   */
  readonly dirtyRing: BigUint64Array | undefined;

  /**
   * Clears the bits set in `bitmap` among the first `pages` pages and tracks those pages again (their next
   * write is recorded). `pages` is a multiple of 64 or covers the whole tracked range.
   */
  clearDirtyPages(bitmap: BigUint64Array, pages: number): void;

  /**
   * Stages the next entry's registers as {@linkcode setSregs}`(sregs)` then {@linkcode setEntryRegisters}`(regs)`
   * do, except that the backend only prepares the memory writes that stage them and returns them for the
   * caller to make before the next run (restore's native call makes them with its page work). Undefined
   * where the backend does not stage registers in memory; the caller then uses the two setters.
   */
  stageEntryInMemory(regs: EntryRegisters, sregs: Sregs): MemoryStaging | undefined;

  /** Sets the registers of the next entry; see {@linkcode EntryRegisters}. */
  setEntryRegisters(r: EntryRegisters): void;

  /** Runs the vCPU until the next exit. */
  run(): VmExit;

  /** The current instruction pointer (after an exit). */
  instructionPointer(): bigint;

  /** All general-purpose registers. */
  getRegisters(): Registers;

  /** Sets all general-purpose registers (the next `run()` starts from them). */
  setRegisters(r: Registers): void;

  /** The special registers, in the snapshot format's neutral form. */
  getSregs(): Sregs;

  /**
   * The x87/SSE state as a 512-byte FXSAVE image (Intel SDM Vol. 1, table 10-2), for debuggers and core
   * dumps; never on the call path.
   */
  getFpuState(): Uint8Array;

  /**
   * Replaces the x87/SSE state from a 512-byte FXSAVE image (as {@linkcode getFpuState} returns it); the
   * rest of the extended state (AVX and above) is kept.
   */
  setFpuState(image: Uint8Array): void;

  /** Sets the special registers. The backend may cache an encoding per `Sregs` object: do not mutate one. */
  setSregs(s: Sregs): void;

  /**
   * Brings the vCPU back to the state a new VM has, except for memory and special registers: finishes or
   * drops anything the last run left pending, resets x87/SSE/AVX state, and, when `full`, every other
   * piece of vCPU state a guest could have changed at any privilege level (debug registers, MSRs, XCR0,
   * pending events).
   */
  resetVcpu(full: boolean): void;

  /**
   * Pushes a time limit of `ms` milliseconds (0: none of its own) for the runs of this thread: `run()`
   * returns an `interrupted` exit once the effective deadline passes (or at the next `run()` after it has).
   * Limits nest on one thread (a host function may call another sandbox): the effective deadline is the
   * earlier of this one and the enclosing call's, and is returned in `performance.now()` time (Infinity
   * for none).
   */
  armTimeout(ms: number): number;

  /** Pops the innermost {@linkcode armTimeout}, going back to the enclosing deadline. */
  disarmTimeout(): void;

  /** Consumes a pending interrupt (after an `interrupted` exit) so that the next `run()` runs. */
  acknowledgeInterrupt(): void;

  /** Data another thread can use to interrupt this VM's `run()`; see {@linkcode Backend.interrupt}. */
  readonly interruptTarget: InterruptTarget;

  /**
   * The VM's run thread, started on first use and kept with the VM (see {@linkcode VcpuThread}). Between
   * runs on it, `run()` and every other method may be used from the owning thread as before; while one is
   * busy, only the thread's own methods. Throws `HypervisorUnavailableError` where the backend has none.
   */
  vcpuThread(): VcpuThread;

  /**
   * Gives the VM back: unmaps guest memory and either keeps the VM for reuse (when `reusable` and the
   * backend can bring every piece of its state back to reset) or destroys it. The VM must not be used
   * afterwards.
   */
  release(reusable: boolean): void;
}

/**
 * A hypervisor: creates VMs and knows how to interrupt one from another thread.
 *
 * @example
 * ```ts ignore
 * import { backend } from "./select.ts";
 * console.log(backend().name);
 * ```
 */
export interface Backend {
  /** The backend's name. */
  readonly name: BackendName;
  /** The hypervisor tag written into snapshot files made on this backend. */
  readonly hypervisor: Hypervisor;
  /** A VM in its reset state, new or from a pool. Throws `HypervisorUnavailableError` when unusable. */
  createVm(): VirtualMachine;
  /**
   * Interrupts the `run()` of the VM `target` belongs to, from any thread of this process. Returns false
   * when the target is not a VM of this backend in this process.
   */
  interrupt(target: InterruptTarget): boolean;
  /** Releases every pooled VM and per-thread resource of the calling thread (a Worker that ends). */
  shutdownThread(): void;
}
