/**
 * A gdb remote stub for one guest vCPU, driven synchronously by the sandbox's run loop.
 *
 * The run loop owns the vCPU; the stub only acts when the loop hands it a stop. The protocol is:
 *
 * 1. When a debugger connects, the loop calls `onStop({ kind: "attach" })`.
 * 2. `onStop` serves gdb's packets (registers, memory, breakpoints, …) on the calling thread, blocking,
 *    until gdb resumes, kills or detaches, and returns that as a {@linkcode ResumeAction}.
 * 3. The loop acts on it and, at the next stop (#BP, #DB, another exception, an abort, or
 *    `interruptRequested()` turning true at one of its periodic checks), calls `onStop` again.
 * 4. When the guest ends for good it calls `onExit`.
 *
 * Breakpoints are `int3` bytes written host-side into guest memory (so read-only code pages are no
 * obstacle); the original byte is kept, memory reads through the stub show it instead of the `int3`, and
 * writes over a breakpoint update it. The system area (pages without U/S) is never writable through the
 * stub, and segment selectors and the privileged RFLAGS bits cannot be changed: the guest stays a CPL3
 * program whatever the debugger does.
 *
 * @module
 */
import type { Connection } from "./connection.ts";
import { GuestAddressError } from "./errors.ts";
import {
  bytesToLatin1,
  escapeBinary,
  framePacket,
  fromHex,
  latin1ToBytes,
  MAX_PACKET,
  PacketReader,
  parseHex64,
  type RspEvent,
  toHex,
  unescapeBinary,
} from "./packet.ts";
import { readVirtual, translate, writeVirtual } from "./page_walk.ts";
import { RFLAGS_TF } from "./registers.ts";
import { GDB_SIGNAL, signalForVector, type SignalName } from "./signals.ts";
import type { DebugTarget, ExitStatus, ResumeAction, StopReason } from "./target.ts";
import {
  GDB_REGISTERS,
  GDB_REGNUM,
  readGdbRegister,
  registerSize,
  TARGET_XML,
  writeGdbRegister,
} from "./target_description.ts";

/** Most software breakpoints at once. */
export const MAX_BREAKPOINTS = 1024;
/** Most packets kept from a debugger while the guest runs (gdb sends none but Ctrl-C then). */
const MAX_PENDING = 64;
/** The `int3` opcode. */
const INT3 = 0xcc;
/** The one thread id the stub reports. */
const THREAD_ID = "1";

/** Error replies: errno values, as gdbserver sends them (gdb only checks the leading `E`). */
const E_FAULT = "E14", E_ACCESS = "E13", E_INVALID = "E22", E_NOSPACE = "E28", E_FAILED = "E01";

interface Breakpoint {
  readonly gpa: number;
  original: number;
}

/** Options of {@linkcode GdbStub}. */
export interface GdbStubOptions {
  /** Called with errors the stub answered gdb with an `E` reply for (default: ignored). */
  readonly onError?: (error: unknown) => void;
  /**
   * Path of the guest ELF on this machine. gdb asks for it (`qXfer:exec-file:read`) when it was started
   * without a file, and loads its symbols from there.
   */
  readonly execFile?: string;
}

function signalHex(signal: SignalName): string {
  return GDB_SIGNAL[signal].toString(16).padStart(2, "0");
}

/**
 * The stub. One per debugger connection; it owns the connection and closes it when gdb kills, detaches or
 * disconnects, or on `close()`.
 *
 * @example
 * ```ts ignore
 * using listener = LoopbackListener.listen(config.gdbPort);
 * const stub = new GdbStub(target, listener.accept()!);
 * let action = stub.onStop({ kind: "attach" });
 * while (action.kind === "continue" || action.kind === "step") {
 *   const stop = runVcpuUntilStop(); // #BP/#DB/fault → exception; interruptRequested() → interrupt
 *   action = stub.onStop(stop);
 * }
 * ```
 */
export class GdbStub {
  readonly #target: DebugTarget;
  readonly #conn: Connection;
  readonly #onError: (error: unknown) => void;
  readonly #execFile: string | undefined;
  readonly #reader = new PacketReader();
  readonly #buffer = new Uint8Array(MAX_PACKET + 8);
  /** Events pulled out of the reader by `interruptRequested` while the guest ran. */
  #pending: RspEvent[] = [];
  readonly #breakpoints = new Map<bigint, Breakpoint>();
  #noAck = false;
  #lastPacket: Uint8Array | undefined;
  /** gdb said `swbreak+`: it expects breakpoint stops with the PC already moved back onto the `int3`. */
  #swbreak = false;
  /** gdb resumed the guest and waits for a stop reply. */
  #running = false;
  /** The stub set RFLAGS.TF for a single step and must clear it at the next stop. */
  #stepping = false;
  #interrupted = false;
  #disconnected = false;
  #closed = false;
  #lastStop = `T05thread:${THREAD_ID};`;
  /**
   * The breakpoint the guest stopped on when the stub left RIP after its `int3` (gdb without swbreak moves
   * it back itself). If gdb goes away before it does, the stub moves it back, so the guest resumes on the
   * instruction and not in the middle of it.
   */
  #hitBreakpoint: bigint | undefined;

  /** Creates the stub for a target and a freshly accepted connection. */
  constructor(target: DebugTarget, connection: Connection, options: GdbStubOptions = {}) {
    this.#target = target;
    this.#conn = connection;
    this.#onError = options.onError ?? (() => {});
    this.#execFile = options.execFile;
  }

  /** Whether the stub still talks to a debugger (false after kill, detach, disconnect or `close`). */
  get attached(): boolean {
    return !this.#closed && !this.#disconnected;
  }

  /** The addresses of the breakpoints currently inserted. */
  get breakpoints(): bigint[] {
    return [...this.#breakpoints.keys()];
  }

  /**
   * Reports a stop and serves the debugger until it resumes the guest; returns what the run loop must do.
   * Blocks the calling thread for as long as the user sits at the gdb prompt.
   */
  onStop(reason: StopReason): ResumeAction {
    if (this.#closed) return { kind: "detach" };
    if (this.#stepping) {
      this.#stepping = false;
      const regs = this.#target.readRegisters();
      this.#target.writeRegisters({ ...regs, rflags: regs.rflags & ~RFLAGS_TF });
    }
    this.#interrupted = false;
    if (this.#disconnected) return this.#finish("detach");
    const reply = this.#stopReply(reason);
    this.#lastStop = reply;
    if (this.#running) {
      this.#running = false;
      this.#send(reply);
    }
    return this.#serve();
  }

  /**
   * Tells the debugger the guest is gone (`W` exit code or `X` signal reply) and closes the connection.
   * Call it when the call ends in a crash after the debugger resumed, or when the sandbox is closed.
   */
  onExit(status: ExitStatus): void {
    if (this.#closed) return;
    if (this.#running && !this.#disconnected) {
      this.#send(
        status.kind === "exited"
          ? `W${(status.code & 0xff).toString(16).padStart(2, "0")}`
          : `X${signalHex(status.signal)}`,
      );
    }
    this.#finish("kill");
  }

  /**
   * Non-blocking: whether gdb asked to stop the running guest (Ctrl-C) or went away. The run loop calls it
   * whenever `KVM_RUN` returns for its periodic timer (and before resuming a call), and on true reports
   * `onStop({ kind: "interrupt" })`.
   */
  interruptRequested(): boolean {
    if (this.#closed) return false;
    if (!this.#interrupted && !this.#disconnected) {
      try {
        if (this.#conn.readable(0)) {
          const n = this.#conn.read(this.#buffer);
          if (n === 0) this.#disconnected = true;
          else this.#reader.push(this.#buffer.subarray(0, n));
        }
      } catch (e) {
        this.#onError(e);
        this.#disconnected = true;
      }
      for (let e = this.#reader.next(); e !== undefined; e = this.#reader.next()) {
        if (e.kind === "interrupt") this.#interrupted = true;
        else this.#pending.push(e);
      }
      // In all-stop mode gdb sends nothing but Ctrl-C while the guest runs; a flood is not gdb.
      if (this.#pending.length > MAX_PENDING) {
        this.#onError(new Error(`the debugger sent ${this.#pending.length} packets while the guest ran`));
        this.#disconnected = true;
      }
    }
    return this.#interrupted || this.#disconnected;
  }

  /**
   * Runs `fn` with every breakpoint taken out of guest memory, then puts them back (reading the original
   * bytes again, since `fn` may have replaced memory). Use it around snapshots, restores and core dumps,
   * which must not see or keep `int3` bytes.
   */
  withoutBreakpoints<T>(fn: () => T): T {
    const addresses = [...this.#breakpoints.keys()];
    this.#removeAllBreakpoints();
    try {
      return fn();
    } finally {
      for (const a of addresses) {
        // After a restore a page may be gone; that breakpoint is dropped (gdb re-inserts at its next resume).
        try {
          this.#insertBreakpoint(a);
        } catch (e) {
          this.#onError(e);
        }
      }
    }
  }

  /** Removes breakpoints, clears a pending single step and closes the connection, without a reply. */
  close(): void {
    if (!this.#closed) this.#finish("detach");
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- stop replies ----

  #stopReply(reason: StopReason): string {
    let signal: SignalName = "SIGTRAP";
    let swbreak = false;
    if (reason.kind === "interrupt") signal = "SIGINT";
    else if (reason.kind === "signal") signal = reason.signal;
    else if (reason.kind === "exception") {
      signal = signalForVector(reason.vector);
      if (reason.vector === 3) {
        const regs = this.#target.readRegisters();
        const at = regs.rip - 1n;
        if (this.#breakpoints.has(at)) {
          swbreak = this.#swbreak;
          // With swbreak gdb expects the PC on the breakpoint; without it, gdb moves it back itself.
          if (swbreak) this.#target.writeRegisters({ ...regs, rip: at });
          else this.#hitBreakpoint = at;
        }
      }
    }
    const regs = this.#target.readRegisters();
    let reply = `T${signalHex(signal)}`;
    for (const n of [GDB_REGNUM.RBP, GDB_REGNUM.RSP, GDB_REGNUM.RIP]) {
      reply += `${n.toString(16).padStart(2, "0")}:${toHex(readGdbRegister(regs, n)!)};`;
    }
    reply += `thread:${THREAD_ID};`;
    if (swbreak) reply += "swbreak:;";
    return reply;
  }

  // ---- the packet loop ----

  #serve(): ResumeAction {
    for (;;) {
      const event = this.#nextEvent();
      if (event === undefined) {
        this.#disconnected = true;
        return this.#finish("detach");
      }
      switch (event.kind) {
        case "ack":
        case "interrupt": // stopped already
          break;
        case "nack":
          if (!this.#noAck && this.#lastPacket !== undefined) this.#write(this.#lastPacket);
          break;
        case "overlong":
          if (this.#noAck) this.#send(E_INVALID);
          else this.#write(latin1ToBytes("-"));
          break;
        case "packet": {
          if (!this.#noAck) {
            this.#write(latin1ToBytes(event.checksumOk ? "+" : "-"));
            if (!event.checksumOk) break;
          }
          let action: ResumeAction | undefined;
          try {
            action = this.#handle(event.body);
          } catch (e) {
            this.#onError(e);
            this.#send(e instanceof GuestAddressError ? E_FAULT : E_FAILED);
          }
          if (action !== undefined) return action;
          break;
        }
      }
      if (this.#disconnected) return this.#finish("detach");
    }
  }

  /** The next event, reading (blocking) as needed; `undefined` at end of stream. */
  #nextEvent(): RspEvent | undefined {
    const queued = this.#pending.shift();
    if (queued !== undefined) return queued;
    for (;;) {
      const e = this.#reader.next();
      if (e !== undefined) return e;
      if (this.#disconnected) return undefined;
      let n: number;
      try {
        n = this.#conn.read(this.#buffer);
      } catch (err) {
        this.#onError(err);
        return undefined;
      }
      if (n === 0) return undefined;
      this.#reader.push(this.#buffer.subarray(0, n));
    }
  }

  #write(bytes: Uint8Array): void {
    if (this.#disconnected || this.#closed) return;
    try {
      this.#conn.write(bytes);
    } catch (e) {
      this.#onError(e);
      this.#disconnected = true;
    }
  }

  #send(body: string | Uint8Array): void {
    const packet = framePacket(body);
    this.#lastPacket = packet;
    this.#write(packet);
  }

  /** Removes breakpoints, clears the stub's TF, closes the connection, and returns `kind`. */
  #finish<K extends "detach" | "kill">(kind: K): { kind: K } {
    try {
      const hit = this.#hitBreakpoint;
      this.#hitBreakpoint = undefined;
      if (hit !== undefined) {
        const regs = this.#target.readRegisters();
        if (regs.rip === hit + 1n) this.#target.writeRegisters({ ...regs, rip: hit });
      }
      this.#removeAllBreakpoints();
      if (this.#stepping) {
        this.#stepping = false;
        const regs = this.#target.readRegisters();
        this.#target.writeRegisters({ ...regs, rflags: regs.rflags & ~RFLAGS_TF });
      }
    } finally {
      this.#closed = true;
      this.#running = false;
      try {
        this.#conn.close();
      } catch (e) {
        this.#onError(e);
      }
    }
    return { kind };
  }

  // ---- commands ----

  #handle(body: Uint8Array): ResumeAction | undefined {
    if (body[0] === 0x58 /* X */) {
      this.#send(this.#writeBinary(body));
      return undefined;
    }
    const p = bytesToLatin1(body);
    switch (p[0]) {
      case "?":
        this.#send(this.#lastStop);
        return undefined;
      case "g":
        this.#send(this.#readAllRegisters());
        return undefined;
      case "G":
        this.#send(this.#writeAllRegisters(p.slice(1)));
        return undefined;
      case "p":
        this.#send(this.#readRegister(p.slice(1)));
        return undefined;
      case "P":
        this.#send(this.#writeRegister(p.slice(1)));
        return undefined;
      case "m":
        this.#send(this.#readMemory(p.slice(1)));
        return undefined;
      case "M":
        this.#send(this.#writeHex(p.slice(1)));
        return undefined;
      case "Z":
      case "z":
        this.#send(this.#breakpointPacket(p));
        return undefined;
      case "c":
      case "s":
      case "C":
      case "S":
        return this.#resumePacket(p);
      case "v":
        return this.#vPacket(p);
      case "q":
        this.#send(this.#query(p));
        return undefined;
      case "Q":
        if (p === "QStartNoAckMode") {
          this.#send("OK");
          this.#noAck = true;
        } else {
          this.#send("");
        }
        return undefined;
      case "H":
      case "T":
        this.#send("OK"); // one thread: selecting it, or asking whether it is alive
        return undefined;
      case "D":
        this.#send("OK");
        return this.#finish("detach");
      case "k":
        return this.#finish("kill");
      default:
        this.#send(""); // unsupported
        return undefined;
    }
  }

  #query(p: string): string {
    if (p.startsWith("qSupported")) {
      this.#swbreak = p.split(/[:;]/).includes("swbreak+");
      return [
        `PacketSize=${MAX_PACKET.toString(16)}`,
        "QStartNoAckMode+",
        "qXfer:features:read+",
        "swbreak+",
        "hwbreak-",
        "vContSupported+",
        ...(this.#execFile === undefined ? [] : ["qXfer:exec-file:read+"]),
      ].join(";");
    }
    if (p.startsWith("qXfer:features:read:")) {
      return this.#xferFeatures(p.slice("qXfer:features:read:".length));
    }
    if (p.startsWith("qXfer:exec-file:read:")) {
      return this.#xferExecFile(p.slice("qXfer:exec-file:read:".length));
    }
    if (p.startsWith("qAttached")) return "1"; // quitting gdb detaches instead of killing the sandbox
    if (p === "qC") return `QC${THREAD_ID}`;
    if (p === "qfThreadInfo") return `m${THREAD_ID}`;
    if (p === "qsThreadInfo") return "l";
    if (p.startsWith("qSymbol")) return "OK";
    if (p.startsWith("qThreadExtraInfo")) return toHex(latin1ToBytes("snapvm vCPU 0"));
    return "";
  }

  #xferFeatures(args: string): string {
    const m = /^([^:]+):([0-9a-fA-F]{1,8}),([0-9a-fA-F]{1,8})$/.exec(args);
    if (m === null) return E_INVALID;
    if (m[1] !== "target.xml") return "E00";
    return xferChunk(latin1ToBytes(TARGET_XML), m[2], m[3]);
  }

  /** `qXfer:exec-file:read:<pid>:<offset>,<length>`: the guest binary's path (one process: any pid). */
  #xferExecFile(args: string): string {
    const m = /^([0-9a-fA-F]*):([0-9a-fA-F]{1,8}),([0-9a-fA-F]{1,8})$/.exec(args);
    if (m === null) return E_INVALID;
    if (this.#execFile === undefined) return "E00";
    return xferChunk(new TextEncoder().encode(this.#execFile), m[2], m[3]);
  }

  // ---- registers ----

  #readAllRegisters(): string {
    const regs = this.#target.readRegisters();
    let s = "";
    for (let n = 0; n < GDB_REGISTERS.length; n++) {
      const v = readGdbRegister(regs, n);
      s += v === undefined ? "xx".repeat(registerSize(n)) : toHex(v);
    }
    return s;
  }

  #writeAllRegisters(hex: string): string {
    const regs = this.#target.readRegisters();
    let pos = 0;
    for (let n = 0; n < GDB_REGISTERS.length && pos < hex.length; n++) {
      const digits = hex.slice(pos, pos + registerSize(n) * 2);
      pos += digits.length;
      if (digits.length !== registerSize(n) * 2) return E_INVALID;
      if (/^x+$/i.test(digits)) continue; // gdb does not know it: leave it
      const value = fromHex(digits);
      if (value === undefined) return E_INVALID;
      const isFpu = n >= GDB_REGNUM.ST0 && n < GDB_REGNUM.FS_BASE;
      if (isFpu && regs.fxsave === undefined) continue; // unavailable registers come back as zeros
      if (!writeGdbRegister(regs, n, value)) return E_ACCESS;
    }
    if (pos !== hex.length) return E_INVALID;
    this.#target.writeRegisters(regs);
    return "OK";
  }

  #readRegister(arg: string): string {
    const n = parseRegnum(arg);
    if (n === undefined) return E_INVALID;
    const v = readGdbRegister(this.#target.readRegisters(), n);
    return v === undefined ? "xx".repeat(registerSize(n)) : toHex(v);
  }

  #writeRegister(arg: string): string {
    const eq = arg.indexOf("=");
    const n = parseRegnum(arg.slice(0, eq));
    const value = fromHex(arg.slice(eq + 1));
    if (eq < 0 || n === undefined || value === undefined || value.length !== registerSize(n)) {
      return E_INVALID;
    }
    const regs = this.#target.readRegisters();
    if (!writeGdbRegister(regs, n, value)) return E_ACCESS;
    this.#target.writeRegisters(regs);
    return "OK";
  }

  // ---- memory ----

  #readMemory(arg: string): string {
    const r = parseAddressLength(arg);
    if (r === undefined) return E_INVALID;
    const length = Math.min(r.length, (MAX_PACKET - 8) / 2);
    const out = new Uint8Array(length);
    const n = readVirtual(this.#target, this.#target.cr3(), r.address, out);
    if (n === 0 && length > 0) return E_FAULT;
    const data = out.subarray(0, n);
    this.#shadow(r.address, data);
    return toHex(data);
  }

  /** Shows the original bytes where breakpoints are inserted. */
  #shadow(address: bigint, data: Uint8Array): void {
    for (const [at, bp] of this.#breakpoints) {
      const off = at - address;
      if (off >= 0n && off < BigInt(data.length)) data[Number(off)] = bp.original;
    }
  }

  #writeHex(arg: string): string {
    const colon = arg.indexOf(":");
    const r = parseAddressLength(arg.slice(0, colon));
    const data = fromHex(arg.slice(colon + 1));
    if (colon < 0 || r === undefined || data === undefined || data.length !== r.length) return E_INVALID;
    return this.#writeMemory(r.address, data);
  }

  #writeBinary(body: Uint8Array): string {
    const colon = body.indexOf(0x3a /* : */);
    if (colon < 0) return E_INVALID;
    const r = parseAddressLength(bytesToLatin1(body.subarray(1, colon)));
    const data = unescapeBinary(body.subarray(colon + 1));
    if (r === undefined || data === undefined || data.length !== r.length) return E_INVALID;
    return this.#writeMemory(r.address, data);
  }

  #writeMemory(address: bigint, data: Uint8Array): string {
    if (data.length === 0) return "OK"; // gdb's probe for X support
    const bytes = data.slice();
    // A write over an inserted breakpoint changes the byte it will restore; the int3 stays.
    for (const [at, bp] of this.#breakpoints) {
      const off = at - address;
      if (off >= 0n && off < BigInt(bytes.length)) {
        bp.original = bytes[Number(off)];
        bytes[Number(off)] = INT3;
      }
    }
    try {
      writeVirtual(this.#target, this.#target.cr3(), address, bytes);
    } catch (e) {
      if (!(e instanceof GuestAddressError)) throw e;
      this.#onError(e);
      return e.problem === "supervisor page" ? E_ACCESS : E_FAULT;
    }
    return "OK";
  }

  // ---- breakpoints ----

  #breakpointPacket(p: string): string {
    const m = /^([Zz])([0-4]),([0-9a-fA-F]{1,16}),([0-9a-fA-F]+)$/.exec(p);
    if (m === null) return E_INVALID;
    if (m[2] !== "0") return ""; // hardware breakpoints and watchpoints: not supported
    const address = BigInt(`0x${m[3]}`);
    if (m[1] === "z") {
      this.#removeBreakpoint(address);
      return "OK";
    }
    if (this.#breakpoints.has(address)) return "OK";
    if (this.#breakpoints.size >= MAX_BREAKPOINTS) return E_NOSPACE;
    try {
      return this.#insertBreakpoint(address) ? "OK" : E_FAULT;
    } catch (e) {
      if (!(e instanceof GuestAddressError)) throw e;
      this.#onError(e);
      return E_FAULT;
    }
  }

  /** Writes an `int3` at a user page address; false when the page is supervisor or not memory. */
  #insertBreakpoint(address: bigint): boolean {
    const t = translate(this.#target, this.#target.cr3(), address);
    if (!t.user) return false;
    // Another address may alias the same byte; then the int3 is already there and the original is its.
    let original: number | undefined;
    for (const bp of this.#breakpoints.values()) if (bp.gpa === t.gpa) original = bp.original;
    if (original === undefined) {
      const byte = new Uint8Array(1);
      if (!this.#target.readPhysical(t.gpa, byte)) return false;
      original = byte[0];
      if (!this.#target.writePhysical(t.gpa, new Uint8Array([INT3]))) return false;
    }
    this.#breakpoints.set(address, { gpa: t.gpa, original });
    return true;
  }

  #removeBreakpoint(address: bigint): void {
    const bp = this.#breakpoints.get(address);
    if (bp === undefined) return;
    this.#breakpoints.delete(address);
    for (const other of this.#breakpoints.values()) if (other.gpa === bp.gpa) return;
    this.#target.writePhysical(bp.gpa, new Uint8Array([bp.original]));
  }

  #removeAllBreakpoints(): void {
    for (const a of [...this.#breakpoints.keys()]) this.#removeBreakpoint(a);
  }

  // ---- run control ----

  #resumePacket(p: string): ResumeAction | undefined {
    // c [addr] | s [addr] | C sig [;addr] | S sig [;addr]
    const withSignal = p[0] === "C" || p[0] === "S";
    const m = withSignal
      ? /^([0-9a-fA-F]{2})(?:;([0-9a-fA-F]{1,16}))?$/.exec(p.slice(1))
      : /^()([0-9a-fA-F]{1,16})?$/.exec(p.slice(1));
    if (m === null) {
      this.#send(E_INVALID);
      return undefined;
    }
    if (m[2] !== undefined) {
      const regs = this.#target.readRegisters();
      this.#target.writeRegisters({ ...regs, rip: BigInt(`0x${m[2]}`) });
    }
    return this.#resume(p[0] === "s" || p[0] === "S", withSignal ? parseInt(m[1], 16) : 0);
  }

  #vPacket(p: string): ResumeAction | undefined {
    if (p === "vCont?") {
      this.#send("vCont;c;C;s;S");
      return undefined;
    }
    if (p.startsWith("vCont;")) {
      // Actions apply to threads; there is one, so the first action is ours.
      const m = /^([csCS])([0-9a-fA-F]{2})?(?::.*)?$/.exec(p.slice(6).split(";")[0]);
      const withSignal = m !== null && (m[1] === "C" || m[1] === "S");
      if (m === null || withSignal !== (m[2] !== undefined)) {
        this.#send(E_INVALID);
        return undefined;
      }
      return this.#resume(m[1].toLowerCase() === "s", withSignal ? parseInt(m[2]!, 16) : 0);
    }
    if (p.startsWith("vKill")) {
      this.#send("OK");
      return this.#finish("kill");
    }
    this.#send("");
    return undefined;
  }

  #resume(step: boolean, signal: number): ResumeAction {
    this.#hitBreakpoint = undefined;
    if (step) {
      const regs = this.#target.readRegisters();
      if ((regs.rflags & RFLAGS_TF) === 0n) {
        this.#target.writeRegisters({ ...regs, rflags: regs.rflags | RFLAGS_TF });
        this.#stepping = true;
      }
    }
    this.#running = true;
    const kind = step ? "step" : "continue";
    return signal === 0 ? { kind } : { kind, signal };
  }
}

/** One `qXfer` reply: the part of `data` at hex `offsetHex`, at most hex `lengthHex` bytes, `m`/`l` first. */
function xferChunk(data: Uint8Array, offsetHex: string, lengthHex: string): string {
  const offset = parseInt(offsetHex, 16);
  const length = Math.min(parseInt(lengthHex, 16), MAX_PACKET / 2);
  if (offset > data.length) return E_INVALID;
  const chunk = data.subarray(offset, offset + length);
  const more = offset + chunk.length < data.length;
  const escaped = escapeBinary(chunk);
  const out = new Uint8Array(escaped.length + 1);
  out[0] = more ? 0x6d /* m */ : 0x6c /* l */;
  out.set(escaped, 1);
  return bytesToLatin1(out);
}

function parseRegnum(s: string): number | undefined {
  if (!/^[0-9a-fA-F]{1,4}$/.test(s)) return undefined;
  const n = parseInt(s, 16);
  return n < GDB_REGISTERS.length ? n : undefined;
}

function parseAddressLength(s: string): { address: bigint; length: number } | undefined {
  const comma = s.indexOf(",");
  if (comma < 0) return undefined;
  const address = parseHex64(s.slice(0, comma));
  const len = s.slice(comma + 1);
  if (address === undefined || !/^[0-9a-fA-F]{1,8}$/.test(len)) return undefined;
  return { address, length: parseInt(len, 16) };
}
