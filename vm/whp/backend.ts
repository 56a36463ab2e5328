/**
 * The Windows Hypervisor Platform backend: `Backend` and `VirtualMachine` (vm/backend/backend.ts) on
 * WinHvPlatform.dll. One partition with one virtual processor per VM; see docs/WHP.md for how each
 * operation maps onto WHP and what is not tested yet.
 *
 * Single-partition mode: without a surrogate process Windows lets a process map memory into one partition
 * only, so this backend allows one live partition per process, across all Workers. The claim is a named
 * kernel mutex (`Local\snapvm-whp-partition-<pid>`), which every thread of the process sees; a second
 * claim throws {@linkcode WhpPartitionLimitError}.
 *
 * @module
 */
import type {
  Backend,
  EntryRegisters,
  GuestMemoryRange,
  InterruptTarget,
  Registers,
  VcpuThread,
  VirtualMachine,
  VmExit,
} from "../backend/backend.ts";
import { HypervisorUnavailableError } from "../errors.ts";
import { Hypervisor, type Sregs } from "../../format/mod.ts";
import { HRESULT, HresultError, WIN32_ERROR } from "../../ffi/windows/hresult.ts";
import { checkPointer, kernel32, lastError, wide } from "../../ffi/windows/kernel32.ts";
import {
  CANCEL_SYMBOL,
  EXIT_CONTEXT,
  REGISTER_VALUE,
  whp,
  WHP_DLL,
  WHV_CAPABILITY_FEATURE_BIT,
  WHV_MAP_GPA_RANGE_FLAGS as MAP,
  WHV_REGISTER_NAME,
} from "../../ffi/windows/winhvplatform.ts";
import { alignedBytes } from "./aligned.ts";
import { CONTROL, requestCancel, VmControl } from "./_control.ts";
import { bitmapBytes, maskToPages } from "./dirty.ts";
import { WhpPartitionLimitError, WhpUnavailableError } from "./errors.ts";
import { decodeExit } from "./exit.ts";
import { cancelRun, capabilityFeatures, hypervisorPresent, Partition } from "./partition.ts";
import {
  decodeRegisters,
  decodeSregs,
  encodeRegisters,
  encodeSregs,
  FULL_RESET_NAMES,
  GP_NAMES,
  nameArray,
  PENDING_NAMES,
  SREG_NAMES,
} from "./registers.ts";
import { Watchdog } from "./_watchdog.ts";
import { FXSAVE } from "../debug/registers.ts";

/** The virtual processor snapvm uses. */
const VP = 0;
/** Host page size. */
const PAGE = 4096;
/** Idle VMs kept per thread; one, since a process may only have one partition anyway. */
const POOL_SIZE = 1;

/**
 * The interrupt target of a WHP VM: the partition handle and the VM's control block, which makes a cancel
 * from another thread safe against the partition's deletion (see `_control.ts`).
 *
 * @example
 * ```ts
 * import type { WhpInterruptTarget } from "./backend.ts";
 * const t: WhpInterruptTarget = { backend: "whp", partition: 1n, control: new SharedArrayBuffer(16) };
 * console.log(t.backend);
 * ```
 */
export interface WhpInterruptTarget extends InterruptTarget {
  /** The partition handle as a number. */
  readonly partition: bigint;
  /** The VM's control block. */
  readonly control: SharedArrayBuffer;
}

let available: true | WhpUnavailableError | undefined;

/** Checks once per thread that WHP can be used; throws the typed reason otherwise. */
function ensureAvailable(): void {
  if (available === undefined) {
    try {
      if (Deno.build.os !== "windows") throw new WhpUnavailableError("not-windows");
      try {
        whp();
      } catch (e) {
        throw new WhpUnavailableError("dll-missing", `${WHP_DLL}: ${(e as Error).message}`);
      }
      if (!hypervisorPresent()) throw new WhpUnavailableError("hypervisor-absent");
      if ((capabilityFeatures() & (1n << BigInt(WHV_CAPABILITY_FEATURE_BIT.DirtyPageTracking))) === 0n) {
        throw new WhpUnavailableError("no-dirty-tracking");
      }
      available = true;
    } catch (e) {
      if (!(e instanceof WhpUnavailableError)) throw e;
      available = e;
    }
  }
  if (available !== true) throw available;
}

/** Claims the process's one partition (see the module doc); returns the mutex handle that holds it. */
function claimProcessSlot(): Deno.PointerObject {
  const k = kernel32();
  const name = wide(`Local\\snapvm-whp-partition-${k.GetCurrentProcessId()}`);
  const h = checkPointer("CreateMutexW", k.CreateMutexW(null, 0, name));
  if (lastError() === WIN32_ERROR.ERROR_ALREADY_EXISTS) {
    k.CloseHandle(h);
    throw new WhpPartitionLimitError();
  }
  return h;
}

/** Register names and an aligned value buffer for one batch of registers. */
class RegisterSet {
  readonly names: Uint32Array;
  readonly values: Uint8Array;
  constructor(names: readonly number[]) {
    this.names = nameArray(names);
    this.values = alignedBytes(names.length * REGISTER_VALUE.SIZE, REGISTER_VALUE.ALIGN);
  }
}

/**
 * A partition with its virtual processor, the state captured when it was new, and its buffers: what
 * survives from one `VirtualMachine` to the next when pooled.
 */
class VpCore {
  readonly partition: Partition;
  readonly control: VmControl = new VmControl();
  readonly target: WhpInterruptTarget;
  readonly context: Uint8Array = alignedBytes(EXIT_CONTEXT.SIZE, 16);
  readonly contextView: DataView;
  readonly gp = new RegisterSet(GP_NAMES);
  readonly sregs = new RegisterSet(SREG_NAMES);
  readonly rip = new RegisterSet([WHV_REGISTER_NAME.Rip]);
  /** Event registers and their values on a new VP. */
  readonly pending: RegisterSet;
  /** MSRs, debug registers and XCR0 a fresh VP has (only those WHP let us read). */
  readonly full: RegisterSet;
  /** The XSAVE state of a fresh VP, written back by `resetVcpu` (format-agnostic: WHP's own bytes). */
  readonly xsave: Uint8Array;
  #slot: Deno.PointerObject | null;

  private constructor(partition: Partition, slot: Deno.PointerObject) {
    this.partition = partition;
    this.#slot = slot;
    this.contextView = new DataView(this.context.buffer, this.context.byteOffset, EXIT_CONTEXT.SIZE);
    this.target = { backend: "whp", partition: partition.handleValue, control: this.control.shared };
    this.pending = new RegisterSet(PENDING_NAMES);
    partition.getRegisters(VP, this.pending.names, this.pending.values);
    this.full = readableSet(partition, FULL_RESET_NAMES);
    this.xsave = partition.getXsaveState(VP);
  }

  static create(): VpCore {
    const slot = claimProcessSlot();
    let partition: Partition | undefined;
    try {
      partition = Partition.create(1);
      partition.createVirtualProcessor(VP);
      return new VpCore(partition, slot);
    } catch (e) {
      try {
        partition?.delete();
      } finally {
        kernel32().CloseHandle(slot);
      }
      throw e;
    }
  }

  /** Refuses further cancels, waits for cancellers inside, deletes the partition, releases the slot. */
  destroy(): void {
    if (this.#slot === null) return;
    this.control.retire();
    try {
      this.partition.delete();
    } finally {
      kernel32().CloseHandle(this.#slot);
      this.#slot = null;
    }
  }
}

/** The subset of `names` that `WHvGetVirtualProcessorRegisters` accepts on this machine, with values. */
function readableSet(p: Partition, names: readonly number[]): RegisterSet {
  const all = new RegisterSet(names);
  try {
    p.getRegisters(VP, all.names, all.values);
    return all;
  } catch (e) {
    if (!(e instanceof HresultError)) throw e;
  }
  const ok = names.filter((n) => {
    const one = new RegisterSet([n]);
    try {
      p.getRegisters(VP, one.names, one.values);
      return true;
    } catch {
      return false;
    }
  });
  const set = new RegisterSet(ok);
  if (ok.length > 0) p.getRegisters(VP, set.names, set.values);
  return set;
}

/** A guest-physical range as mapped. */
interface Piece {
  gpa: number;
  size: number;
  tracked: boolean;
}

const registry = new FinalizationRegistry<VpCore>((core) => {
  try {
    core.destroy();
  } catch {
    // Last resort only: nothing to report to.
  }
});

/** Idle VMs of this thread. */
const pool: VpCore[] = [];
/** Effective deadlines of the calls running on this thread, outermost first. */
const deadlines: number[] = [];
let watchdog: Watchdog | undefined;

function threadWatchdog(): Watchdog {
  return (watchdog ??= new Watchdog(WHP_DLL, CANCEL_SYMBOL));
}

/**
 * One VM on WHP. See {@linkcode VirtualMachine} for the contract of each method.
 */
class WhpVm implements VirtualMachine {
  readonly backend = "whp" as const;
  readonly interruptTarget: WhpInterruptTarget;
  #core: VpCore | undefined;
  #memory: GuestMemoryRange | undefined;
  #pieces: Piece[] = [];
  #tracking = false;
  #dirty: BigUint64Array | undefined;
  /** RIP to write before the next run: WHP does not advance it past an I/O instruction. */
  #pendingRip: bigint | undefined;
  /** The exit context's RIP is current (no register was written since the exit). */
  #exitRipValid = false;
  #lastSregs: Sregs | undefined;
  #lastSregsBytes: Uint8Array | undefined;
  /** False once a run failed: the VP may be mid-event and is not pooled. */
  #clean = true;

  constructor(core: VpCore) {
    this.#core = core;
    this.interruptTarget = core.target;
    registry.register(this, core, this);
  }

  /**
   * Not there yet: `callAsync` and hot sandboxes need a run thread per VM (`WHvRunVirtualProcessor` on a
   * thread of its own, cancelled through the partition like `interrupt`), which this backend lacks so far.
   */
  vcpuThread(): VcpuThread {
    throw new HypervisorUnavailableError(
      "whp",
      "callAsync and hot sandboxes are not supported on this backend yet",
      "use call() on a sandbox without the hot option",
    );
  }

  #c(): VpCore {
    if (this.#core === undefined) throw new Error("WHP VM was released");
    return this.#core;
  }

  get tracking(): boolean {
    return this.#tracking;
  }

  mapMemory(memory: GuestMemoryRange): void {
    const c = this.#c();
    this.#unmapAll();
    const { size, guard, trackedPages } = memory;
    const tracked = trackedPages * PAGE;
    if (size % PAGE !== 0 || guard.offset % PAGE !== 0 || guard.size % PAGE !== 0 || tracked > size) {
      throw new RangeError(`guest memory ranges must be page multiples inside the ${size}-byte range`);
    }
    if (guard.size > 0 && tracked > guard.offset) {
      throw new RangeError("dirty tracking must end before the guard page");
    }
    // Pieces: tracked prefix (remapped with TrackDirtyPages when tracking starts), the rest before the
    // guard, and what follows the guard. The guard is left unmapped: a guest access exits as "mmio".
    const cuts: Piece[] = [];
    const add = (gpa: number, end: number, isTracked: boolean) => {
      if (end > gpa) cuts.push({ gpa, size: end - gpa, tracked: isTracked });
    };
    const guardEnd = guard.offset + guard.size;
    add(0, tracked, true);
    if (guard.size === 0) add(tracked, size, false);
    else {
      add(tracked, guard.offset, false);
      add(guardEnd, size, false);
    }
    this.#memory = memory;
    for (const piece of cuts) {
      this.#map(c, piece, false);
      this.#pieces.push(piece);
    }
    this.#tracking = false;
  }

  #map(c: VpCore, piece: Piece, track: boolean): void {
    const host = Deno.UnsafePointer.create(this.#memory!.address + BigInt(piece.gpa));
    if (host === null) throw new RangeError("guest memory at host address 0");
    const flags = MAP.Read | MAP.Write | MAP.Execute | (track ? MAP.TrackDirtyPages : 0);
    try {
      c.partition.mapGpaRange(host, BigInt(piece.gpa), piece.size, flags);
    } catch (e) {
      if (e instanceof HresultError && e.hresult === HRESULT.ERROR_VID_PARTITION_ALREADY_EXISTS) {
        throw new WhpPartitionLimitError();
      }
      throw e;
    }
  }

  #unmapAll(): void {
    const c = this.#c();
    for (const piece of this.#pieces) c.partition.unmapGpaRange(BigInt(piece.gpa), piece.size);
    this.#pieces = [];
    this.#memory = undefined;
    this.#tracking = false;
  }

  memoryReplaced(offset: number, size: number): void {
    const c = this.#c();
    // WHP resolves host pages when a range is mapped: map every piece the new view overlaps again.
    for (const piece of this.#pieces) {
      if (piece.gpa >= offset + size || piece.gpa + piece.size <= offset) continue;
      c.partition.unmapGpaRange(BigInt(piece.gpa), piece.size);
      this.#map(c, piece, piece.tracked && this.#tracking);
    }
  }

  startDirtyTracking(): void {
    const c = this.#c();
    const piece = this.#pieces.find((p) => p.tracked);
    if (piece === undefined) {
      this.#tracking = this.#memory !== undefined;
      return;
    }
    if (this.#tracking) return;
    c.partition.unmapGpaRange(BigInt(piece.gpa), piece.size);
    this.#map(c, piece, true);
    this.#tracking = true;
    this.#dirty = this.#sticky = undefined;
  }

  readonly tracksScratch = false;

  /** WHP has no dirty ring: `takeDirtyPages` queries WHP's bitmap. */
  readonly dirtyRing = undefined;

  /**
   * WHvQueryGpaRangeDirtyBitmap reads and clears WHP's bits in one call, so the backend keeps the bits set
   * itself until `clearDirtyPages` (the interface's semantics); WHP tracks every page again right away.
   */
  takeDirtyPages(): BigUint64Array {
    const c = this.#c();
    if (!this.#tracking || this.#memory === undefined) throw new Error("dirty tracking has not started");
    const pages = this.#memory.trackedPages;
    if (this.#dirty === undefined || this.#dirty.length !== bitmapBytes(pages) / 8) {
      this.#dirty = new BigUint64Array(bitmapBytes(pages) / 8);
      this.#sticky = new BigUint64Array(bitmapBytes(pages) / 8);
    }
    if (pages > 0) c.partition.queryDirtyBitmap(0n, pages * PAGE, this.#dirty);
    const fresh = maskToPages(this.#dirty, pages);
    const sticky = this.#sticky!;
    for (let i = 0; i < sticky.length; i++) sticky[i] |= fresh[i];
    return sticky;
  }

  #sticky: BigUint64Array | undefined;

  clearDirtyPages(bitmap: BigUint64Array, pages: number): void {
    const sticky = this.#sticky;
    if (sticky === undefined) return;
    const words = Math.min(sticky.length, Math.ceil(pages / 64), bitmap.length);
    for (let i = 0; i < words; i++) sticky[i] &= ~bitmap[i];
  }

  /** WHP sets registers with `WHvSetVirtualProcessorRegisters`: nothing to stage in memory. */
  stageEntryInMemory(): undefined {
    return undefined;
  }

  setEntryRegisters(r: EntryRegisters): void {
    const c = this.#c();
    const v = new DataView(c.gp.values.buffer, c.gp.values.byteOffset, c.gp.values.byteLength);
    c.gp.values.fill(0);
    // GP_NAMES follows REGISTER_NAMES: rdi is index 5, rsp 6, r11 15, rip 16, rflags 17.
    v.setBigUint64(5 * 16, r.rdi, true);
    v.setBigUint64(15 * 16, r.r11 ?? 0n, true);
    v.setBigUint64(6 * 16, r.rsp, true);
    v.setBigUint64(16 * 16, r.rip, true);
    v.setBigUint64(17 * 16, r.rflags, true);
    c.partition.setRegisters(VP, c.gp.names, c.gp.values);
    this.#pendingRip = undefined;
    this.#exitRipValid = false;
  }

  run(): VmExit {
    const c = this.#c();
    this.#flushRip(c);
    this.#exitRipValid = false;
    if (!c.control.enter()) return { kind: "interrupted" };
    try {
      c.partition.runVirtualProcessor(VP, c.context);
    } catch (e) {
      this.#clean = false;
      return { kind: "failed", reason: (e as Error).message };
    } finally {
      c.control.leave();
    }
    const decoded = decodeExit(c.contextView);
    this.#exitRipValid = true;
    if (decoded.nextRip !== undefined) this.#pendingRip = decoded.nextRip;
    if (decoded.exit.kind === "failed" || decoded.exit.kind === "shutdown") this.#clean = false;
    return decoded.exit;
  }

  #flushRip(c: VpCore): void {
    if (this.#pendingRip === undefined) return;
    new DataView(c.rip.values.buffer, c.rip.values.byteOffset, 16).setBigUint64(0, this.#pendingRip, true);
    c.partition.setRegisters(VP, c.rip.names, c.rip.values);
    this.#pendingRip = undefined;
  }

  instructionPointer(): bigint {
    const c = this.#c();
    if (this.#pendingRip !== undefined) return this.#pendingRip;
    if (this.#exitRipValid) return c.contextView.getBigUint64(EXIT_CONTEXT.RIP, true);
    c.partition.getRegisters(VP, c.rip.names, c.rip.values);
    return new DataView(c.rip.values.buffer, c.rip.values.byteOffset, 16).getBigUint64(0, true);
  }

  getRegisters(): Registers {
    const c = this.#c();
    this.#flushRip(c);
    c.partition.getRegisters(VP, c.gp.names, c.gp.values);
    return decodeRegisters(c.gp.values);
  }

  setRegisters(r: Registers): void {
    const c = this.#c();
    encodeRegisters(r, c.gp.values);
    c.partition.setRegisters(VP, c.gp.names, c.gp.values);
    this.#pendingRip = undefined;
    this.#exitRipValid = false;
  }

  getSregs(): Sregs {
    const c = this.#c();
    c.partition.getRegisters(VP, c.sregs.names, c.sregs.values);
    return decodeSregs(c.sregs.values);
  }

  setSregs(s: Sregs): void {
    const c = this.#c();
    if (this.#lastSregs !== s || this.#lastSregsBytes === undefined) {
      const bytes = new Uint8Array(SREG_NAMES.length * REGISTER_VALUE.SIZE);
      encodeSregs(s, bytes);
      this.#lastSregs = s;
      this.#lastSregsBytes = bytes;
    }
    c.sregs.values.set(this.#lastSregsBytes);
    c.partition.setRegisters(VP, c.sregs.names, c.sregs.values);
  }

  getFpuState(): Uint8Array {
    // WHP's XSAVE state starts with the legacy area in FXSAVE layout, in the standard and the compacted
    // XSAVE format alike (Intel SDM Vol. 1, 13.4.1).
    return this.#c().partition.getXsaveState(VP).slice(0, FXSAVE.SIZE);
  }

  setFpuState(image: Uint8Array): void {
    if (image.length !== FXSAVE.SIZE) {
      throw new RangeError(`FXSAVE image has ${image.length} bytes, expected ${FXSAVE.SIZE}`);
    }
    const c = this.#c();
    const state = c.partition.getXsaveState(VP).slice();
    state.set(image, 0);
    // XSTATE_BV (u64 at 512) bits 0 (x87) and 1 (SSE): a component whose bit is clear loads as initial.
    state[FXSAVE.SIZE] |= 0b11;
    c.partition.setXsaveState(VP, state);
  }

  resetVcpu(full: boolean): void {
    const c = this.#c();
    this.#pendingRip = undefined;
    this.#exitRipValid = false;
    c.partition.setRegisters(VP, c.pending.names, c.pending.values);
    c.partition.setXsaveState(VP, c.xsave);
    if (full && c.full.names.length > 0) c.partition.setRegisters(VP, c.full.names, c.full.values);
    c.control.acknowledge();
    this.#clean = true;
  }

  armTimeout(ms: number): number {
    // Effective deadlines nest per thread (see VirtualMachine.armTimeout); the watchdog is armed only for
    // finite ones, so a call without any limit costs nothing.
    const outer = deadlines.length > 0 ? deadlines[deadlines.length - 1] : Infinity;
    const deadline = Math.min(ms > 0 ? performance.now() + ms : Infinity, outer);
    deadlines.push(deadline);
    if (deadline !== Infinity) {
      threadWatchdog().arm(this.#c().target, Math.max(0, deadline - performance.now()));
    }
    return deadline;
  }

  disarmTimeout(): void {
    if (deadlines.pop() !== Infinity) threadWatchdog().disarm();
  }

  acknowledgeInterrupt(): void {
    this.#c().control.acknowledge();
  }

  release(reusable: boolean): void {
    const c = this.#core;
    if (c === undefined) return;
    registry.unregister(this);
    let pooled = false;
    try {
      this.#unmapAll();
      if (reusable && this.#clean && pool.length < POOL_SIZE) {
        c.control.acknowledge();
        pool.push(c);
        pooled = true;
      }
    } finally {
      this.#core = undefined;
      if (!pooled) c.destroy();
    }
  }
}

/**
 * The WHP backend.
 *
 * @example
 * ```ts ignore
 * import { whpBackend } from "./backend.ts";
 * const vm = whpBackend.createVm();
 * vm.release(true);
 * ```
 */
export const whpBackend: Backend = {
  name: "whp",
  hypervisor: Hypervisor.WHP,
  createVm(): VirtualMachine {
    ensureAvailable();
    return new WhpVm(pool.pop() ?? VpCore.create());
  },
  interrupt(target: InterruptTarget): boolean {
    const t = target as Partial<WhpInterruptTarget>;
    if (
      t.backend !== "whp" || typeof t.partition !== "bigint" || !(t.control instanceof SharedArrayBuffer) ||
      t.control.byteLength < CONTROL.WORDS * 4
    ) return false;
    const partition = t.partition;
    return requestCancel(new Int32Array(t.control), () => cancelRun(partition, VP));
  },
  shutdownThread(): void {
    for (const core of pool.splice(0)) core.destroy();
    watchdog?.close();
    watchdog = undefined;
  },
};
