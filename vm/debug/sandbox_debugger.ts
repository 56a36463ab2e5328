/**
 * Debugging one sandbox: the gdb remote stub on 127.0.0.1 (`SandboxConfiguration.gdbPort`), ELF core dumps
 * when the guest crashes (`coreDumpDir`) or on demand (`sbx.coreDump()`), and the {@linkcode DebugTarget}
 * both use: the guest's CPL3 registers and its memory, read from and written to the sandbox's vCPU.
 *
 * The run loop (`GuestVm.run`) calls the hooks of {@linkcode SandboxDebugger} at a few places only (the
 * start of a run, guest exceptions, aborts, interrupted exits, a failed run); a sandbox without `gdbPort`
 * and `coreDumpDir` has no debugger and pays nothing.
 *
 * @module
 */
import {
  IDT_VECTORS,
  INFO_ADDR,
  PAGE,
  PML4_ADDR,
  SEL_KERNEL_CODE,
  SEL_USER_CODE,
  STUB_ADDR,
} from "../machine/abi.ts";
import { STUB_SIZE } from "../machine/system_area.ts";
import { ABI_SREGS } from "../machine/sregs.ts";
import type { ExceptionFrame, GuestVm } from "../machine/guest_vm.ts";
import { parseElf } from "../machine/elf.ts";
import type { Registers, VmExit } from "../backend/backend.ts";
import type { Mapping } from "../memory/mapping.ts";
import {
  ExecutionCanceledError,
  GuestAbortedError,
  GuestCrashedError,
  MemoryAccessViolationError,
  withCoreFile,
} from "../errors.ts";
import { log } from "../logger.ts";
import { LoopbackListener } from "./connection.ts";
import { coreDumpOfTarget, type CoreFileSegment, writeCoreDump } from "./core_dump.ts";
import { CoreDumpError, DebuggerConnectionError } from "./errors.ts";
import { GdbStub } from "./gdb_stub.ts";
import { FXSAVE, RFLAGS_USER_MASK, type X86Registers } from "./registers.ts";
import { signalForVector, type SignalName } from "./signals.ts";
import type { DebugTarget, ResumeAction, StopReason } from "./target.ts";

/**
 * The guest ELF a sandbox runs, when known: gdb loads its symbols (the stub names it), and core files
 * record it. `segments` are its `PT_LOAD`s, for the core's mapped-file note; read from `path` when absent.
 */
export interface GuestBinaryInfo {
  /** Absolute path of the ELF. */
  readonly path: string;
  /** Its entry point (`e_entry`). */
  readonly entry: bigint;
  /** Its loaded segments, if already parsed. */
  readonly segments?: readonly CoreFileSegment[];
}

/** What a sandbox asks of its debugger; see `SandboxConfiguration`. */
export interface DebugOptions {
  /** Port of the gdb stub on 127.0.0.1 (0: any free port, announced in a log record). */
  readonly gdbPort?: number;
  /** Directory that receives a core file for every crash. */
  readonly coreDumpDir?: string;
  /** The guest binary, when known. */
  readonly binary?: GuestBinaryInfo;
}

/** While a debugger may connect or is connected, `KVM_RUN` returns at least this often (Ctrl-C, connects). */
export const DEBUG_TICK_MS = 50;
/** How long one wait for gdb to connect blocks before it looks for a cancellation. */
const ACCEPT_SLICE_MS = 100;

/** The `int3` opcode. */
const INT3 = 0xcc;

/** Whether `rip` is in the entry code of the info page (any address of that page the guest executes). */
function inEntryCode(rip: bigint): boolean {
  return rip >= BigInt(INFO_ADDR) && rip < BigInt(INFO_ADDR + PAGE);
}

/** RFLAGS bit 1, always set. */
const RFLAGS_FIXED = 0x2n;

/** Crash errors that get a core file. */
type CrashError = GuestCrashedError | MemoryAccessViolationError | GuestAbortedError;

function isCrash(e: unknown): e is CrashError {
  return e instanceof GuestCrashedError || e instanceof MemoryAccessViolationError ||
    e instanceof GuestAbortedError;
}

/** Errors the debugger made on purpose (gdb's `kill`): no core for them. */
const killedByDebugger = new WeakSet<object>();

/** The signal a process would have died of for this error, and the fault address, for gdb and cores. */
function signalOf(e: unknown): { signal: SignalName; faultAddress?: bigint } {
  if (e instanceof MemoryAccessViolationError) return { signal: "SIGSEGV", faultAddress: e.address };
  if (e instanceof GuestAbortedError) return { signal: "SIGABRT" };
  if (e instanceof GuestCrashedError) {
    return {
      signal: e.vector === undefined ? "SIGSEGV" : signalForVector(e.vector),
      faultAddress: e.cr2,
    };
  }
  return { signal: "SIGKILL" };
}

/**
 * The vector whose IDT stub contains `rip`, or `undefined` when `rip` is not in a stub. A vCPU stopped in a
 * stub (right after its `out`) is one whose guest raised that exception.
 *
 * @example
 * ```ts
 * import { stubVector } from "./sandbox_debugger.ts";
 * console.log(stubVector(0x20e9n)); // 14
 * console.log(stubVector(0x200000n)); // undefined
 * ```
 */
export function stubVector(rip: bigint): number | undefined {
  const offset = rip - BigInt(STUB_ADDR);
  if (offset < 0n || offset >= BigInt(IDT_VECTORS * STUB_SIZE)) return undefined;
  return Math.floor(Number(offset) / STUB_SIZE);
}

/** The file name part of a path. */
function baseName(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, "");
  return trimmed.slice(trimmed.search(/[^\\/]*$/));
}

/** A path for a log line: control characters (a recorded path may hold any) shown as `\\u` escapes. */
function printable(path: string): string {
  let out = "";
  for (const ch of path) {
    const c = ch.codePointAt(0)!;
    out += c < 0x20 || (c >= 0x7f && c <= 0x9f) ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}

/** Longest binary name a core file's name carries. */
const CORE_NAME_MAX = 64;

/**
 * The binary's name as it appears in a core file's name (`core.<name>.<pid>.<n>`): the path's last part,
 * with anything but letters, digits and `._+-` replaced and at most 64 characters. The path may come from
 * a snapshot file (hostile): whatever it holds, the core stays a short plain name inside `coreDumpDir`.
 */
function coreName(binary: GuestBinaryInfo | undefined): string {
  if (binary === undefined) return "guest";
  const name = baseName(binary.path).replace(/[^A-Za-z0-9._+-]/g, "_").slice(0, CORE_NAME_MAX);
  return name === "" || /^\.+$/.test(name) ? "guest" : name;
}

/**
 * {@linkcode DebugTarget} over a sandbox's vCPU and memory, only used while the vCPU is stopped. Registers
 * are read once per stop and cached; a write goes to the vCPU at once.
 *
 * When the vCPU stopped in an exception stub (the guest raised an exception), registers read as the guest's
 * CPL3 state from the exception frame (see {@linkcode enterUserState} to resume from it).
 */
export class SandboxTarget implements DebugTarget {
  readonly #vm: GuestVm;
  #cache: X86Registers | undefined;

  /** A target over `vm`. */
  constructor(vm: GuestVm) {
    this.#vm = vm;
  }

  /** Forgets the cached registers (the vCPU ran). */
  invalidate(): void {
    this.#cache = undefined;
  }

  /**
   * The vector of the exception stub the vCPU stopped in, with the user frame it pushed; `undefined` when
   * it is not in a stub (or the exception was not raised at CPL3).
   */
  #stubStop(g: Registers, cs: number) {
    if (cs !== SEL_KERNEL_CODE) return undefined;
    const vector = stubVector(g.rip);
    if (vector === undefined) return undefined;
    const frame = this.#vm.exceptionFrame();
    if (Number(frame.cs & 0xffffn) !== SEL_USER_CODE) return undefined;
    return { vector, frame };
  }

  /** Why the vCPU is where it is, as far as the registers tell: an exception it raised, or nothing. */
  stopSignal(): { signal: SignalName; faultAddress?: bigint } | undefined {
    const m = this.#vm.machine;
    const s = m.getSregs();
    const stop = this.#stubStop(m.getRegisters(), s.cs.selector);
    if (stop === undefined) return undefined;
    return { signal: signalForVector(stop.vector), faultAddress: stop.vector === 14 ? s.cr2 : undefined };
  }

  /**
   * After the guest raised an exception: puts the vCPU back at CPL3 in the state the exception frame
   * records (RIP, RSP, RFLAGS; CS and SS as the ABI sets them), so that the next run resumes the guest
   * there instead of in the stub. Returns the frame, or `undefined`, changing nothing, when the vCPU is not
   * in a stub with a user frame.
   */
  enterUserState(): ExceptionFrame | undefined {
    const m = this.#vm.machine;
    const g = m.getRegisters();
    const s = m.getSregs();
    const stop = this.#stubStop(g, s.cs.selector);
    if (stop === undefined) return undefined;
    const f = stop.frame;
    m.setRegisters({
      ...g,
      rip: f.rip,
      rsp: f.rsp,
      rflags: (f.rflags & RFLAGS_USER_MASK) | RFLAGS_FIXED,
      rax: f.rax,
    });
    m.setSregs({ ...s, cs: ABI_SREGS.cs, ss: ABI_SREGS.ss });
    this.#cache = undefined;
    return f;
  }

  /** Whether the vCPU is at CPL3 (not inside the exception stub), where the debugger may stop it. */
  atUserLevel(): boolean {
    return this.#vm.machine.getSregs().cs.selector === SEL_USER_CODE;
  }

  readRegisters(): X86Registers {
    this.#cache ??= this.#load();
    return { ...this.#cache, fxsave: this.#cache.fxsave?.slice() };
  }

  #load(): X86Registers {
    const m = this.#vm.machine;
    const g = m.getRegisters();
    const s = m.getSregs();
    let cs = BigInt(s.cs.selector), ss = BigInt(s.ss.selector);
    const stop = this.#stubStop(g, s.cs.selector);
    if (stop !== undefined) {
      const f = stop.frame;
      Object.assign(g, { rip: f.rip, rsp: f.rsp, rflags: f.rflags, rax: f.rax });
      cs = f.cs & 0xffffn;
      ss = f.ss & 0xffffn;
    }
    let fxsave: Uint8Array | undefined;
    try {
      fxsave = m.getFpuState();
    } catch (e) {
      // Registers without x87/SSE are still worth showing; gdb marks those registers unavailable.
      log({ level: "debug", source: "snapvm", message: `debugger: cannot read the x87/SSE state: ${e}` });
    }
    return {
      ...g,
      cs,
      ss,
      ds: BigInt(s.ds.selector),
      es: BigInt(s.es.selector),
      fs: BigInt(s.fs.selector),
      gs: BigInt(s.gs.selector),
      fsBase: s.fs.base,
      gsBase: s.gs.base,
      fxsave,
    };
  }

  writeRegisters(r: X86Registers): void {
    const old = this.readRegisters();
    const m = this.#vm.machine;
    // The privileged RFLAGS bits (IF, IOPL, …) stay as the ABI sets them, whatever the caller passed.
    const rflags = (r.rflags & RFLAGS_USER_MASK) | RFLAGS_FIXED;
    m.setRegisters({
      rax: r.rax,
      rbx: r.rbx,
      rcx: r.rcx,
      rdx: r.rdx,
      rsi: r.rsi,
      rdi: r.rdi,
      rsp: r.rsp,
      rbp: r.rbp,
      r8: r.r8,
      r9: r.r9,
      r10: r.r10,
      r11: r.r11,
      r12: r.r12,
      r13: r.r13,
      r14: r.r14,
      r15: r.r15,
      rip: r.rip,
      rflags,
    });
    if (r.fsBase !== old.fsBase || r.gsBase !== old.gsBase) {
      const s = m.getSregs();
      m.setSregs({
        ...s,
        fs: { ...s.fs, base: BigInt.asUintN(64, r.fsBase) },
        gs: { ...s.gs, base: BigInt.asUintN(64, r.gsBase) },
      });
    }
    const fx = r.fxsave;
    if (fx !== undefined && old.fxsave !== undefined && !sameBytes(fx, old.fxsave)) {
      m.setFpuState(fx.slice(0, FXSAVE.SIZE));
    }
    // Selectors never change: the guest stays a CPL3 program.
    this.#cache = {
      ...r,
      rflags,
      cs: old.cs,
      ss: old.ss,
      ds: old.ds,
      es: old.es,
      fs: old.fs,
      gs: old.gs,
      fxsave: fx === undefined || old.fxsave === undefined ? old.fxsave : fx.slice(0, FXSAVE.SIZE),
    };
  }

  /**
   * The region and offset of `[gpa, gpa + length)` when it is all guest RAM (not the guard page, not
   * beyond the scratch region).
   */
  #region(gpa: number, length: number): { mapping: Mapping; offset: number } | undefined {
    const l = this.#vm.layout;
    if (!Number.isSafeInteger(gpa) || gpa < 0 || length < 0) return undefined;
    if (gpa + length <= l.persistentSize) return { mapping: this.#vm.persistent, offset: gpa };
    const offset = gpa - l.scratchBase;
    if (offset >= 0 && offset + length <= l.scratchSize) return { mapping: this.#vm.scratch, offset };
    return undefined;
  }

  readPhysical(gpa: number, into: Uint8Array): boolean {
    const r = this.#region(gpa, into.length);
    if (r === undefined) return false;
    into.set(r.mapping.read(r.offset, into.length));
    return true;
  }

  writePhysical(gpa: number, data: Uint8Array): boolean {
    const r = this.#region(gpa, data.length);
    if (r === undefined) return false;
    r.mapping.write(r.offset, data);
    this.#vm.markHostWritten(gpa, data.length);
    return true;
  }

  cr3(): bigint {
    // The guest cannot load CR3 (CPL3); every sandbox uses the ABI's page tables.
    return BigInt(PML4_ADDR);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Parsed segments of guest binaries named by path, read once per info object. */
const segmentCache = new WeakMap<GuestBinaryInfo, readonly CoreFileSegment[] | null>();

function segmentsOf(binary: GuestBinaryInfo): readonly CoreFileSegment[] | undefined {
  if (binary.segments !== undefined) return binary.segments;
  let segments = segmentCache.get(binary);
  if (segments === undefined) {
    try {
      segments = parseElf(Deno.readFileSync(binary.path)).segments;
    } catch (e) {
      log({
        level: "warn",
        source: "snapvm",
        message: `core dump: cannot read the segments of ${binary.path} (${
          (e as Error).message
        }); the core names no mapped file`,
      });
      segments = null;
    }
    segmentCache.set(binary, segments);
  }
  return segments ?? undefined;
}

/**
 * Writes an ELF core of a stopped sandbox to `path`: registers (from the exception frame when the guest is
 * in the exception stub), every page the guest can see, and the binary when known. `signal` defaults to
 * the one the guest's exception would have raised, if it is in the stub. Returns the file's size.
 *
 * @throws {CoreDumpError} when the file cannot be written or the guest's page tables are unusable.
 */
export function writeSandboxCore(
  vm: GuestVm,
  path: string | URL,
  binary: GuestBinaryInfo | undefined,
  crash?: { signal: SignalName; faultAddress?: bigint },
): number {
  const target = new SandboxTarget(vm);
  const write = () => {
    const why = crash ?? target.stopSignal();
    let description;
    try {
      description = coreDumpOfTarget(target, {
        entry: binary?.entry ?? 0n,
        programName: binary === undefined ? "guest" : baseName(binary.path),
        binaryPath: binary?.path,
        binarySegments: binary === undefined ? undefined : segmentsOf(binary),
        signal: why?.signal,
        faultAddress: why?.faultAddress,
      });
    } catch (e) {
      if (e instanceof CoreDumpError) throw e;
      throw new CoreDumpError(`cannot read the guest's state: ${(e as Error).message}`, { cause: e });
    }
    return writeCoreDump(path, description);
  };
  const debug = vm.debugger;
  return debug === undefined ? write() : debug.withoutBreakpoints(write);
}

/** A process-wide counter for crash core names. */
let coreCount = 0;

/**
 * The debugger of one sandbox (its `GuestVm`): owns the loopback listener, the stub of the connected gdb,
 * and the crash-core settings. Made by {@linkcode SandboxDebugger.create} when the configuration asks for
 * any of it; closed with the sandbox.
 *
 * @example
 * ```ts ignore
 * vm.debugger = SandboxDebugger.create(vm, { gdbPort: 1234, binary });
 * ```
 */
export class SandboxDebugger {
  readonly #vm: GuestVm;
  readonly #target: SandboxTarget;
  readonly #listener: LoopbackListener | undefined;
  readonly #coreDumpDir: string | undefined;
  readonly #binary: GuestBinaryInfo | undefined;
  #stub: GdbStub | undefined;
  /** No run has happened yet: the first one waits for gdb. */
  #first = true;
  /** A stub whose first stop has not been reported yet (gdb connected while the vCPU was in the stub). */
  #attachPending = false;
  /** A stop waiting for the guest to reach its entry (see {@linkcode #stopInGuestCode}). */
  #entryStop: { address: bigint; original: number | undefined; reason: StopReason } | undefined;

  private constructor(vm: GuestVm, options: DebugOptions) {
    this.#vm = vm;
    this.#target = new SandboxTarget(vm);
    this.#coreDumpDir = options.coreDumpDir;
    this.#binary = options.binary;
    if (options.gdbPort !== undefined) {
      // The stub's blocking sockets are libc's (ffi/linux/socket.ts); core dumps work everywhere.
      if (Deno.build.os !== "linux") {
        throw new DebuggerConnectionError(`the gdb stub runs on Linux only, not on ${Deno.build.os}`);
      }
      this.#listener = LoopbackListener.listen(options.gdbPort);
    }
  }

  /**
   * The debugger `options` ask for, listening already when `gdbPort` is set; `undefined` when they ask for
   * nothing.
   *
   * @throws {DebuggerConnectionError} when the port cannot be listened on.
   */
  static create(vm: GuestVm, options: DebugOptions): SandboxDebugger | undefined {
    if (options.gdbPort === undefined && options.coreDumpDir === undefined) return undefined;
    return new SandboxDebugger(vm, options);
  }

  /** The port the stub listens on, if it does. */
  get port(): number | undefined {
    return this.#listener?.port;
  }

  /** Whether a debugger is connected. */
  get attached(): boolean {
    return this.#stub?.attached ?? false;
  }

  /** The target the stub and core dumps use. */
  get target(): SandboxTarget {
    return this.#target;
  }

  /** Runs `fn` with the breakpoints out of guest memory (snapshots, restores, core dumps). */
  withoutBreakpoints<T>(fn: () => T): T {
    const stub = this.#stub;
    return stub !== undefined && stub.attached ? stub.withoutBreakpoints(fn) : fn();
  }

  // ---- run loop hooks ----

  /**
   * At the start of a run (time limit armed, `deadline` its effective deadline): the first run waits for
   * gdb to connect and stops for it; later runs take over a debugger that connected in between, or report
   * a Ctrl-C that came while the sandbox was idle. Returns the deadline, moved by the time spent stopped.
   */
  enterRun(functionName: string, deadline: number): number {
    if (this.#listener === undefined) return deadline;
    if (!this.attached) {
      const first = this.#first;
      this.#first = false;
      if (first) deadline = this.#paused(deadline, () => this.#waitForDebugger(functionName));
      else if (!this.#accept()) return deadline;
    } else if (!this.#attachPending && !this.#stub!.interruptRequested()) {
      return deadline;
    }
    return this.#stopInGuestCode(this.#attachPending ? { kind: "attach" } : { kind: "interrupt" }, deadline);
  }

  /** Runs the vCPU once; while gdb may connect or is connected, with a periodic interrupt. */
  run(): VmExit {
    const m = this.#vm.machine;
    this.#target.invalidate(); // the registers read at the last stop are about to change
    if (this.#listener === undefined) return m.run();
    m.armTimeout(DEBUG_TICK_MS);
    try {
      return m.run();
    } finally {
      m.disarmTimeout();
    }
  }

  /**
   * The guest raised exception `vector`. With gdb attached, reports it and returns the new deadline when
   * gdb resumes the guest; `undefined` when the exception is to end the call as it would without a
   * debugger (no debugger, or gdb let the signal through).
   */
  exception(vector: number, deadline: number): number | undefined {
    const entry = this.#entryStop;
    if (!this.attached && entry === undefined) return undefined;
    const frame = this.#target.enterUserState();
    if (frame === undefined) return undefined;
    if (entry !== undefined && vector === 3 && frame.rip === entry.address + 1n) {
      // The guest ran its entry code and reached its own entry: the stop gdb was waiting for.
      this.#clearEntryStop();
      if (entry.original !== undefined) {
        this.#target.writeRegisters({ ...this.#target.readRegisters(), rip: entry.address });
        return this.attached ? this.#stopOrThrow(entry.reason, deadline) : deadline;
      }
      // gdb has a breakpoint there itself: report it as that breakpoint.
    }
    if (!this.attached) return undefined;
    const faultAddress = vector === 14 ? this.#vm.machine.getSregs().cr2 : undefined;
    return this.#stop({ kind: "exception", vector, faultAddress }, deadline);
  }

  /** The guest called `sv_abort`: like {@linkcode exception}, reported as SIGABRT. */
  abort(deadline: number): number | undefined {
    if (!this.attached) return undefined;
    return this.#stop({ kind: "signal", signal: "SIGABRT" }, deadline);
  }

  /**
   * An interrupted exit that is not a cancellation (the tick): takes over a debugger that just connected,
   * or stops for a Ctrl-C. Returns the deadline.
   */
  interrupted(deadline: number): number {
    if (this.#listener === undefined) return deadline;
    if (!this.attached) {
      if (!this.#accept()) return deadline;
    } else if (!this.#attachPending && !this.#stub!.interruptRequested()) {
      return deadline;
    }
    // Inside the exception stub (PVM emulates CPL0 slowly, so a tick can land there) the guest is not a
    // CPL3 program yet: the exception exit that follows is the stop to report. Inside the entry code, the
    // stop waits for the guest's own code too.
    if (this.#entryStop !== undefined || !this.#target.atUserLevel()) return deadline;
    if (inEntryCode(this.#target.readRegisters().rip)) return deadline;
    return this.#stopOrThrow(this.#attachPending ? { kind: "attach" } : { kind: "interrupt" }, deadline);
  }

  /**
   * The run failed with `error`: writes a core for a crash when `coreDumpDir` is set (naming it in the
   * error), and tells gdb the guest is gone.
   */
  runFailed(error: unknown): void {
    this.#clearEntryStop();
    const why = signalOf(error);
    if (this.#coreDumpDir !== undefined && isCrash(error) && !killedByDebugger.has(error)) {
      const name = coreName(this.#binary);
      const path = `${this.#coreDumpDir.replace(/[\\/]+$/, "")}/core.${name}.${Deno.pid}.${++coreCount}`;
      try {
        writeSandboxCore(this.#vm, path, this.#binary, why);
        withCoreFile(error, path);
      } catch (e) {
        log({
          level: "warn",
          source: "snapvm",
          message: `no core dump for ${error.name}: ${(e as Error).message}`,
        });
      }
    }
    if (this.attached) this.#stub!.onExit({ kind: "signaled", signal: why.signal });
  }

  /** Tells a connected gdb that the guest exited, and stops listening. */
  close(): void {
    try {
      if (this.attached) this.#stub!.onExit({ kind: "exited", code: 0 });
    } finally {
      this.#stub = undefined;
      this.#listener?.close();
    }
  }

  // ---- internals ----

  #newStub(connection: ReturnType<LoopbackListener["accept"]> & object): void {
    this.#stub = new GdbStub(this.#target, connection, {
      execFile: this.#binary?.path,
      onError: (e) =>
        log({ level: "debug", source: "snapvm", message: `gdb stub: ${(e as Error)?.message ?? e}` }),
    });
    this.#attachPending = true;
  }

  /** Takes a debugger that is waiting to connect, if any. */
  #accept(): boolean {
    const c = this.#listener!.accept(0);
    if (c === undefined) return false;
    this.#newStub(c);
    return true;
  }

  /** Blocks until gdb connects; an interrupt handle's kill ends the wait. Then reports the attach stop. */
  #waitForDebugger(functionName: string): void {
    const port = this.#listener!.port;
    const file = this.#binary === undefined ? "<guest binary>" : printable(this.#binary.path);
    log({
      level: "info",
      source: "snapvm",
      message: `waiting for gdb on 127.0.0.1:${port} (gdb ${file} -ex 'target remote 127.0.0.1:${port}')`,
    });
    for (;;) {
      const c = this.#listener!.accept(ACCEPT_SLICE_MS);
      if (c !== undefined) {
        this.#newStub(c);
        return;
      }
      if (this.#vm.callState.killed()) throw new ExecutionCanceledError(functionName, "interrupted");
    }
  }

  /**
   * Runs `fn` with the call's time limit paused (the time limit is disarmed, then armed again with the
   * time that was left); returns the new effective deadline.
   */
  #paused(deadline: number, fn: () => void): number {
    const m = this.#vm.machine;
    const left = deadline - performance.now();
    m.disarmTimeout();
    try {
      fn();
    } finally {
      deadline = m.armTimeout(left === Infinity ? 0 : Math.max(1, Math.ceil(left)));
    }
    return deadline;
  }

  /**
   * Reports a stop and serves gdb until it resumes the guest. Returns the new deadline, or `undefined`
   * when gdb resumed with a signal (the guest is to die of it). Throws for gdb's `kill`.
   */
  #stop(reason: StopReason, deadline: number): number | undefined {
    const stub = this.#stub!;
    this.#attachPending = false;
    let action = { kind: "detach" } as ResumeAction;
    const next = this.#paused(deadline, () => {
      try {
        action = stub.onStop(reason);
      } finally {
        this.#target.invalidate();
      }
    });
    if (action.kind === "kill") {
      const e = new GuestCrashedError("killed by the debugger");
      killedByDebugger.add(e);
      throw e;
    }
    if ((action.kind === "continue" || action.kind === "step") && action.signal !== undefined) {
      return undefined;
    }
    return next;
  }

  /**
   * A stop at the start of a run. A run that starts at an entry (init, after a restore, a sandbox from a
   * snapshot) starts in the entry code of the info page (docs/ABI.md, "Entry"), which resets the x87/SSE/AVX
   * state and jumps to the guest's entry in R11: the stop is deferred to that entry, through a one-off
   * `int3` there, so gdb first sees the guest at its own `_start` or dispatch loop.
   */
  #stopInGuestCode(reason: StopReason, deadline: number): number {
    const regs = this.#target.readRegisters();
    if (!inEntryCode(regs.rip)) return this.#stopOrThrow(reason, deadline);
    const address = regs.r11;
    if (this.#stub!.breakpoints.includes(address)) {
      this.#entryStop = { address, original: undefined, reason };
      return deadline;
    }
    const byte = new Uint8Array(1);
    const gpa = Number(address);
    if (!this.#target.readPhysical(gpa, byte) || !this.#target.writePhysical(gpa, new Uint8Array([INT3]))) {
      return this.#stopOrThrow(reason, deadline); // not memory: let gdb see where it is
    }
    this.#entryStop = { address, original: byte[0], reason };
    return deadline;
  }

  /** Takes the one-off entry `int3` out again, if it is in. */
  #clearEntryStop(): void {
    const entry = this.#entryStop;
    this.#entryStop = undefined;
    if (entry?.original !== undefined) {
      this.#target.writePhysical(Number(entry.address), new Uint8Array([entry.original]));
    }
  }

  /** {@linkcode #stop} for stops that are not the guest's own fault: a signal from gdb ends the call. */
  #stopOrThrow(reason: StopReason, deadline: number): number {
    const next = this.#stop(reason, deadline);
    if (next !== undefined) return next;
    const e = new GuestCrashedError("terminated by a signal from the debugger");
    killedByDebugger.add(e);
    throw e;
  }
}

/** The guest binary info for a binary loaded from `path` (made absolute). */
export function binaryInfo(
  path: string,
  entry: bigint,
  segments?: readonly CoreFileSegment[],
): GuestBinaryInfo {
  const absolute = /^([A-Za-z]:)?[\\/]/.test(path) ? path : `${Deno.cwd()}/${path.replace(/^\.\//, "")}`;
  return { path: absolute, entry, segments };
}
