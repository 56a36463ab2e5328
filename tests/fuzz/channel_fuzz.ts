/**
 * Fuzzer 3: the guest-to-host channel. The `fuzzguest` writes fuzzer-chosen bytes into its output buffer
 * (results, host calls, log and abort records with wrong lengths and tags, lengths pointing past the buffer,
 * strings that are not UTF-8) and signals a port, or runs a script of several such messages, or accesses
 * ports with other widths, with `in`, and ports the ABI does not define.
 *
 * Allowed: a result, or a typed error; a poisoning error must poison, the sandbox must come back with
 * `restore`, host functions only ever see arguments of their registered types, log records and prints are
 * strings, a second sandbox keeps working, and fds and mappings do not grow. Port accesses outside the
 * ABI must end in `GuestCrashedError` (a #GP or a protocol error).
 *
 * @module
 */
import {
  GuestCrashedError,
  HostFunctions,
  type MultiUseSandbox,
  setLogger,
  type Snapshot,
  UninitializedSandbox,
  type Value,
} from "../../mod.ts";
import { caseRng, type Rng } from "./_rng.ts";
import { mutateRandom } from "./_mutate.ts";
import {
  badSandboxError,
  describeError,
  fdCount,
  type FuzzOptions,
  type FuzzResult,
  guestBinary,
  isOneOf,
  loop,
  nativeMapCount,
  outcomeName,
  POISONING_ERRORS,
  Tally,
  workDirOf,
} from "./_harness.ts";

/** A call of the fuzz guest, serialisable for the corpus. */
export interface ChannelCase {
  /** Guest function. */
  fn: string;
  /** Arguments: u32 numbers, or bytes as hex strings prefixed with `hex:`. */
  args: (number | string)[];
  /** What the case does. */
  description: string;
}

const PORT_DONE = 0xe0, PORT_HOST_CALL = 0xe1, PORT_ABORT = 0xe2, PORT_LOG = 0xe3;
const RESULT_TYPES = ["void", "i32", "u32", "i64", "u64", "f32", "f64", "bool", "string", "bytes"] as const;
const OUTPUT_SIZE = 4096;

// ---- message generator -------------------------------------------------------------------------------------

class Bytes {
  readonly parts: number[] = [];
  u8(v: number) {
    this.parts.push(v & 0xff);
  }
  u32(v: number) {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
  }
  raw(b: Uint8Array | number[]) {
    for (const x of b) this.parts.push(x);
  }
  get length() {
    return this.parts.length;
  }
  done(): Uint8Array {
    return new Uint8Array(this.parts);
  }
}

const HOST_NAMES = ["Add", "Echo", "Bytes", "Throw", "Mix", "HostPrint", "Nothing", "Missing", "", "Ädd"];

/** A length field: usually right, sometimes off by a little or a lot, or pointing past the buffer. */
function lengthField(rng: Rng, actual: number, at: number): number {
  return rng.weighted(
    [
      [60, actual],
      [8, actual + 1],
      [8, Math.max(0, actual - 1)],
      [6, OUTPUT_SIZE - at - 4],
      [6, OUTPUT_SIZE - at - 3],
      [4, OUTPUT_SIZE],
      [4, 0xffffffff],
      [4, 0x80000000],
    ] as const,
  );
}

/** A string payload: ASCII, multi-byte UTF-8, broken UTF-8, or overlong/surrogate encodings. */
function stringBytes(rng: Rng): Uint8Array {
  const kind = rng.weighted(
    [[30, "ascii"], [20, "utf8"], [25, "broken"], [10, "random"], [15, "long"]] as const,
  );
  switch (kind) {
    case "ascii":
      return new TextEncoder().encode("x".repeat(rng.length(40)));
    case "utf8":
      return new TextEncoder().encode(rng.pick(["héllo", "名前", "🎉✓", "\u0000nul", "a\u{10ffff}"]));
    case "broken":
      return new Uint8Array(rng.pick([
        [0xff],
        [0xc3],
        [0xe2, 0x82],
        [0xed, 0xa0, 0x80], // a UTF-16 surrogate encoded in UTF-8
        [0xc0, 0x80], // overlong NUL
        [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
        [0x61, 0x80, 0x62],
      ]));
    case "random":
      return rng.bytes(rng.length(64));
    case "long":
      return new TextEncoder().encode("y".repeat(rng.range(1000, 5000)));
  }
}

function valueBytes(rng: Rng, out: Bytes, tag?: number): void {
  const t = tag ?? rng.weighted([[85, rng.int(10)], [15, rng.pick([10, 11, 0x7f, 0xff])]] as const);
  out.u8(t);
  switch (t) {
    case 0:
      return;
    case 1:
    case 2:
    case 5:
      return out.u32(rng.u32());
    case 3:
    case 4:
    case 6:
      out.u32(rng.u32());
      return out.u32(rng.u32());
    case 7:
      return out.u8(rng.weighted([[80, rng.int(2)], [20, rng.pick([2, 0xff])]] as const));
    case 8:
    case 9: {
      const s = t === 8 ? stringBytes(rng) : rng.bytes(rng.length(300));
      out.u32(lengthField(rng, s.length, out.length));
      return out.raw(s);
    }
    default:
      return out.raw(rng.bytes(rng.length(8)));
  }
}

/** The message a port expects, built with fuzzed fields. */
function message(rng: Rng, port: number, resultTag: number): Uint8Array {
  const b = new Bytes();
  if (port === PORT_DONE) {
    const status = rng.weighted([[50, 0], [25, 1], [10, 2], [15, rng.u32()]] as const);
    b.u32(status);
    if (status === 0) valueBytes(rng, b, rng.chance(0.7) ? resultTag : undefined);
    else if (status === 1) {
      b.u32(rng.pick([1, 2, 3, 4, 5, 100, rng.u32()]));
      const s = stringBytes(rng);
      b.u32(lengthField(rng, s.length, b.length));
      b.raw(s);
    }
  } else if (port === PORT_HOST_CALL) {
    const name = new TextEncoder().encode(rng.pick(HOST_NAMES));
    b.u32(lengthField(rng, name.length, 0));
    b.raw(rng.chance(0.1) ? stringBytes(rng) : name);
    const argc = rng.weighted(
      [[70, rng.int(4)], [10, rng.range(4, 12)], [10, 64], [5, 65], [5, 0xffffffff]] as const,
    );
    b.u32(argc);
    for (let i = 0; i < Math.min(argc, 12); i++) valueBytes(rng, b);
  } else if (port === PORT_LOG || port === PORT_ABORT) {
    b.u32(port === PORT_LOG ? rng.pick([0, 1, 2, 3, 4, 5, 6, 0xffffffff]) : rng.u32());
    const s = stringBytes(rng);
    b.u32(lengthField(rng, s.length, b.length));
    b.raw(s);
  } else {
    b.raw(rng.bytes(rng.length(64)));
  }
  let bytes = b.done();
  if (rng.chance(0.25)) bytes = mutateRandom(rng, bytes, { maxOps: 2, maxLength: OUTPUT_SIZE + 64 }).bytes;
  return bytes;
}

function hex(b: Uint8Array): string {
  return "hex:" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function unhex(s: string): Uint8Array {
  const h = s.slice(4);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function guestPort(rng: Rng): number {
  return rng.weighted(
    [
      [30, PORT_DONE],
      [30, PORT_HOST_CALL],
      [15, PORT_LOG],
      [8, PORT_ABORT],
      [6, rng.range(0xe4, 0xe7)],
      [3, 0xef],
      [8, rng.int(0x10000)],
    ] as const,
  );
}

/** One random case. */
export function channelCase(rng: Rng): ChannelCase {
  const kind = rng.weighted([[55, "raw"], [20, "seq"], [20, "port"], [5, "valid"]] as const);
  if (kind === "raw") {
    const port = guestPort(rng);
    const t = rng.int(10);
    const payload = message(rng, port, t);
    return {
      fn: `RawOut_${RESULT_TYPES[t]}`,
      args: [hex(payload), port],
      description: `RawOut_${RESULT_TYPES[t]}: ${payload.length} bytes to port 0x${port.toString(16)}`,
    };
  }
  if (kind === "seq") {
    const script = new Bytes();
    const n = rng.range(1, 5);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const port = rng.chance(0.85)
        ? rng.pick([PORT_HOST_CALL, PORT_LOG, PORT_LOG, PORT_DONE, PORT_ABORT])
        : guestPort(rng);
      const mode = rng.weighted(
        [[85, 4], [5, 1], [5, 2], [3, 8 | 4], [2, 16 | (rng.range(1, 40) << 8)]] as const,
      );
      const payload = message(rng, port, 2);
      script.u32(port);
      script.u32(mode);
      script.u32(payload.length);
      script.raw(payload);
      parts.push(`0x${port.toString(16)}/${mode}/${payload.length}`);
    }
    return { fn: "RawSeq", args: [hex(script.done())], description: `RawSeq ${parts.join(", ")}` };
  }
  if (kind === "port") {
    const port = rng.weighted(
      [
        [40, rng.range(0xe0, 0xe7)],
        [10, 0xef],
        [20, rng.int(0x100)],
        [20, rng.int(0x10000)],
        [10, rng.pick([0, 0xff, 0x100, 0xffff, 0xdf])],
      ] as const,
    );
    const width = rng.weighted([[30, 1], [30, 2], [30, 4], [10, rng.pick([0, 3, 8])]] as const);
    const which = rng.pick(["OutWidth", "InWidth", "InWidth", "OutImm"] as const);
    if (which === "OutImm") {
      const w = rng.int(3);
      return { fn: "OutImm", args: [w], description: `OutImm ${w}` };
    }
    return {
      fn: which,
      args: [port, width],
      description: `${which} port 0x${port.toString(16)} width ${width}`,
    };
  }
  const b = rng.bytes(rng.length(2000));
  return { fn: "EchoBytes", args: [hex(b)], description: `EchoBytes ${b.length} bytes (must round-trip)` };
}

// ---- running -----------------------------------------------------------------------------------------------

/** The host side of a channel run: host functions that check what they are given, and records. */
export class ChannelHost {
  readonly problems: string[] = [];
  readonly hostFunctions: HostFunctions;
  constructor() {
    const check = (name: string, args: unknown[], types: string[]) => {
      if (args.length !== types.length) this.problems.push(`${name} got ${args.length} arguments`);
      args.forEach((a, i) => {
        const actual = a instanceof Uint8Array ? "bytes" : typeof a;
        const ok = actual === types[i];
        if (!ok) this.problems.push(`${name} argument ${i} is ${typeof a}, registered as ${types[i]}`);
      });
    };
    this.hostFunctions = new HostFunctions()
      .register("Add", { params: ["i32", "i32"], returns: "i32" }, (...a: unknown[]) => {
        check("Add", a, ["number", "number"]);
        return ((a[0] as number) + (a[1] as number)) | 0;
      })
      .register("Echo", { params: ["string"], returns: "string" }, (...a: unknown[]) => {
        check("Echo", a, ["string"]);
        return a[0] as string;
      })
      .register("Bytes", { params: ["bytes", "u64"], returns: "bytes" }, (...a: unknown[]) => {
        check("Bytes", a, ["bytes", "bigint"]);
        return new Uint8Array(Number((a[1] as bigint) % 8192n)); // may not fit the output buffer
      })
      .register("Throw", { params: [], returns: "void" }, () => {
        throw new Error("host function failure on purpose");
      })
      .register("Mix", {
        params: ["i32", "u32", "i64", "u64", "f32", "f64", "bool", "string", "bytes"],
        returns: "f64",
      }, (...a: unknown[]) => {
        check("Mix", a, [
          "number",
          "number",
          "bigint",
          "bigint",
          "number",
          "number",
          "boolean",
          "string",
          "bytes",
        ]);
        return 1.5;
      })
      .register("Nothing", { params: [], returns: "void" }, () => undefined)
      .registerPrint((text) => {
        if (typeof text !== "string") this.problems.push(`HostPrint got ${typeof text}`);
      });
  }
}

/** A fuzz-guest sandbox with a snapshot to restore after every case, and a bystander sandbox. */
export class ChannelRig {
  readonly host = new ChannelHost();
  sbx!: MultiUseSandbox;
  snap!: Snapshot;
  readonly bystander: MultiUseSandbox;
  readonly #u: UninitializedSandbox;

  constructor() {
    this.#u = new UninitializedSandbox(guestBinary("fuzzguest"), {
      outputDataSize: OUTPUT_SIZE,
      inputDataSize: 16384,
      maxExecutionTimeMs: 500,
      guestLogLevel: "trace",
    }, this.host.hostFunctions);
    this.fresh();
    this.bystander = new UninitializedSandbox(guestBinary("testguest")).evolve();
  }

  /** Replaces the fuzz sandbox with a newly evolved one. */
  fresh(): void {
    this.sbx?.close();
    this.snap?.close();
    this.sbx = this.#u.evolve();
    this.snap = this.sbx.snapshot();
  }

  close(): void {
    this.sbx.close();
    this.snap.close();
    this.bystander.close();
  }
}

function isPortCase(c: ChannelCase): boolean {
  return c.fn === "OutWidth" || c.fn === "InWidth" || c.fn === "OutImm";
}

/** Whether a port access is one the ABI defines (32-bit `out` to 0xE0–0xE3). */
function definedAccess(c: ChannelCase): boolean {
  if (c.fn === "OutImm") return false;
  const [port, width] = c.args as number[];
  const w = width === 1 || width === 2 ? width : 4;
  return c.fn === "OutWidth" && w === 4 && (port & 0xffff) >= PORT_DONE && (port & 0xffff) <= PORT_LOG;
}

/** Runs one case on the rig; returns why its outcome is not allowed, or undefined. */
export function runChannelCase(rig: ChannelRig, c: ChannelCase, tally: Tally): string | undefined {
  const problems: string[] = [];
  const args = c.args.map((a) => (typeof a === "string" ? unhex(a) : a)) as Value[];
  const logProblems: string[] = [];
  setLogger((r) => {
    if (typeof r.message !== "string") logProblems.push(`log record message is ${typeof r.message}`);
    if (!["trace", "debug", "info", "warn", "error"].includes(r.level)) {
      logProblems.push(`log level ${r.level}`);
    }
  });
  let result: Value | undefined;
  let error: unknown;
  try {
    result = rig.sbx.call(c.fn, ...args);
  } catch (e) {
    error = e;
  }
  tally.count(`${c.fn.startsWith("Raw") ? c.fn.replace(/_.*/, "") : c.fn} ${outcomeName(error)}`);
  if (error !== undefined) {
    const bad = badSandboxError(error);
    if (bad) problems.push(bad);
    if (isOneOf(error, POISONING_ERRORS) !== rig.sbx.poisoned) {
      problems.push(`${(error as Error).name} left poisoned = ${rig.sbx.poisoned}`);
    }
  }
  if (isPortCase(c) && !definedAccess(c)) {
    if (!(error instanceof GuestCrashedError) || !/protocol error|vector 13/.test(error.message)) {
      problems.push(
        `port access outside the ABI ended in ${error === undefined ? "success" : describeError(error)}`,
      );
    }
  }
  if (c.fn === "EchoBytes") {
    const sent = args[0] as Uint8Array;
    if (
      !(result instanceof Uint8Array) || result.length !== sent.length ||
      !result.every((x, i) => x === sent[i])
    ) {
      problems.push(`EchoBytes did not round-trip: ${error ? describeError(error) : "wrong bytes"}`);
    }
  }
  problems.push(...logProblems, ...rig.host.problems.splice(0));
  // Back to the snapshot; the sandbox must work again.
  try {
    rig.sbx.restore(rig.snap);
    if (rig.sbx.poisoned) problems.push("restore left the sandbox poisoned");
    const back = rig.sbx.call("Counter");
    if (back !== 1) problems.push(`after restore Counter returned ${back}, expected 1`);
  } catch (e) {
    problems.push(`restore and call after the case: ${describeError(e)}`);
    rig.fresh();
  }
  return problems.length ? problems.join("\n") : undefined;
}

/**
 * Runs the channel fuzzer.
 *
 * @example
 * ```ts ignore
 * const r = await fuzzChannel({ seed: 1, iterations: 1000 });
 * ```
 */
export function fuzzChannel(opts: FuzzOptions): Promise<FuzzResult> {
  const work = workDirOf(opts);
  const rig = new ChannelRig();
  try {
    const tally = new Tally();
    runChannelCase(rig, { fn: "Counter", args: [], description: "warm-up" }, tally);
    const base = { fds: fdCount(), maps: nativeMapCount() };
    const inflight = `${work.dir}/case.json`;
    return Promise.resolve(loop("channel", opts, tally, (i) => {
      const c = channelCase(caseRng(opts.seed, i));
      Deno.writeTextFileSync(inflight, JSON.stringify(c, null, 2) + "\n");
      let problem: string | undefined;
      try {
        problem = runChannelCase(rig, c, tally);
        if (i % 10 === 0) {
          const echo = rig.bystander.call("Echo", `bystander ${i}`);
          if (echo !== `bystander ${i}`) problem = `the bystander sandbox answered ${String(echo)}`;
        }
        if (i % 500 === 499) rig.fresh();
      } catch (e) {
        problem = `the harness caught ${describeError(e)}`;
      }
      if (i % 200 === 199 && problem === undefined) {
        const now = { fds: fdCount(), maps: nativeMapCount() };
        if (now.fds > base.fds + 4 || now.maps > base.maps + 8) {
          problem = `resources grew: fds ${base.fds} -> ${now.fds}, mappings ${base.maps} -> ${now.maps}`;
          Object.assign(base, now);
        }
      }
      if (problem !== undefined) {
        tally.fail(opts, "channel", i, c.description, problem, () => ({
          bytes: new TextEncoder().encode(JSON.stringify(c, null, 2) + "\n"),
          ext: ".json",
        }));
      }
    }));
  } finally {
    setLogger(undefined);
    rig.close();
    work.cleanup();
  }
}

/** Replays one corpus input (a JSON `ChannelCase`); returns why it fails, or undefined. */
export function replayChannelInput(bytes: Uint8Array): string | undefined {
  const rig = new ChannelRig();
  try {
    const c = JSON.parse(new TextDecoder().decode(bytes)) as ChannelCase;
    return runChannelCase(rig, c, new Tally());
  } catch (e) {
    return `the harness caught ${describeError(e)}`;
  } finally {
    setLogger(undefined);
    rig.close();
  }
}
