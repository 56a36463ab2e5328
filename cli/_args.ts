/**
 * Command-line parsing: options, sizes (`64k`, `256m`, `1g`) and guest-function arguments parsed per the
 * guest's signature, and results formatted for printing.
 *
 * @module
 */
import type { ReturnType, Value, ValueType } from "../mod.ts";
import { UsageError } from "./_errors.ts";

/**
 * How an option takes its value: `flag` (none), `value` (the next token, or `--name=value`; the last one
 * wins), or `call` (repeatable: a function name and every following token up to the next known option).
 */
export type OptionKind = "flag" | "value" | "call";

/** Options of a command by spelling (`"--heap"`, `"-o"`); aliases map to the same kind. */
export type OptionSpec = Readonly<Record<string, OptionKind>>;

/** One `--call <Fn> [args…]`. */
export interface CallSpec {
  /** The guest function. */
  name: string;
  /** Its arguments, still as text. */
  args: string[];
}

/** The parsed command line of one command. */
export interface ParsedArgs {
  /** Values of `value` options and `true` for flags, by spelling. */
  options: Map<string, string | true>;
  /** Every `call` option, in order. */
  calls: CallSpec[];
  /** Everything else, in order. */
  positionals: string[];
}

/** Whether a token is a negative number (an argument, not an option). */
function isNegativeNumber(token: string): boolean {
  return /^-(\d|\.\d|inf(inity)?$)/i.test(token);
}

/**
 * Splits `tokens` into options, calls and positionals. `--` ends option parsing. A token that starts with
 * `-` and is neither a known option nor a negative number is a {@linkcode UsageError}.
 */
export function parseArgs(tokens: readonly string[], spec: OptionSpec, command: string): ParsedArgs {
  const options = new Map<string, string | true>();
  const calls: CallSpec[] = [];
  const positionals: string[] = [];
  const isOption = (t: string) => t in spec || (t.startsWith("--") && t.split("=")[0] in spec);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token === "--") {
      positionals.push(...tokens.slice(i + 1));
      break;
    }
    if (!token.startsWith("-") || token === "-" || isNegativeNumber(token)) {
      positionals.push(token);
      continue;
    }
    const eq = token.startsWith("--") ? token.indexOf("=") : -1;
    const name = eq > 0 ? token.slice(0, eq) : token;
    const kind = spec[name];
    if (kind === undefined) throw new UsageError(`unknown option ${name}`, command);
    if (kind === "flag") {
      if (eq > 0) throw new UsageError(`${name} takes no value`, command);
      options.set(name, true);
    } else if (kind === "value") {
      const value = eq > 0 ? token.slice(eq + 1) : tokens[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value`, command);
      options.set(name, value);
    } else {
      const fn = eq > 0 ? token.slice(eq + 1) : tokens[++i];
      if (fn === undefined || fn === "") throw new UsageError(`${name} needs a function name`, command);
      const args: string[] = [];
      while (i + 1 < tokens.length && !isOption(tokens[i + 1]) && tokens[i + 1] !== "--") {
        args.push(tokens[++i]);
      }
      calls.push({ name: fn, args });
    }
  }
  return { options, calls, positionals };
}

const SIZE_UNITS: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * Parses a size: bytes (`4096`) or a whole number of KiB, MiB or GiB (`64k`, `256m`, `1g`; also `64K`,
 * `64KiB`, `64kb`).
 */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  const value = m ? Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()] : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${what} is "${text}", expected a size such as 4096, 64k, 256m or 1g`);
  }
  return value;
}

/** A count with its noun: `1 page`, `2 pages`. */
export function formatCount(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Formats a byte count for people: `128 KiB`, `1.5 MiB`. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = bytes / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  i32: [-(1n << 31n), (1n << 31n) - 1n],
  u32: [0n, (1n << 32n) - 1n],
  i64: [-(1n << 63n), (1n << 63n) - 1n],
  u64: [0n, (1n << 64n) - 1n],
};

function parseInteger(text: string, type: string, where: string): bigint {
  const m = /^([+-]?)(0x[0-9a-f]+|\d+)$/i.exec(text);
  if (m === null) throw new UsageError(`${where} (${type}) is "${text}", expected an integer`);
  const magnitude = BigInt(m[2]);
  const value = m[1] === "-" ? -magnitude : magnitude;
  const [min, max] = INT_RANGES[type];
  if (value < min || value > max) {
    throw new UsageError(`${where} (${type}) is ${text}, allowed range is ${min} to ${max}`);
  }
  return value;
}

function parseFloatArg(text: string, type: string, where: string): number {
  const t = text.toLowerCase();
  if (/^[+-]?inf(inity)?$/.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
  if (t === "nan") return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) {
    throw new UsageError(`${where} (${type}) is "${text}", expected a number`);
  }
  return Number(t);
}

/**
 * Reads bytes given as hex (`00ff10`, `0x00ff10`; empty for no bytes) or as `@path` (the file's contents).
 */
async function parseBytes(text: string, where: string): Promise<Uint8Array> {
  if (text.startsWith("@")) {
    try {
      return await Deno.readFile(text.slice(1));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new UsageError(`${where} (bytes): no such file ${text.slice(1)}`);
      }
      throw e;
    }
  }
  const hex = text.replace(/^0x/i, "");
  if (!/^([0-9a-f]{2})*$/i.test(hex)) {
    throw new UsageError(`${where} (bytes) is "${text}", expected hex digit pairs (00ff10) or @file`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Parses one argument of a guest function from text, per its declared type: integers (decimal or `0x` hex;
 * `i64`/`u64` become bigints), floats (`1.5`, `-2e3`, `inf`, `nan`), `true`/`false` (or `1`/`0`), strings
 * as given, bytes as hex or `@file`.
 */
export async function parseValue(text: string, type: ValueType, where: string): Promise<Value> {
  switch (type) {
    case "i32":
    case "u32":
      return Number(parseInteger(text, type, where));
    case "i64":
    case "u64":
      return parseInteger(text, type, where);
    case "f32":
    case "f64":
      return parseFloatArg(text, type, where);
    case "bool":
      if (text === "true" || text === "1") return true;
      if (text === "false" || text === "0") return false;
      throw new UsageError(`${where} (bool) is "${text}", expected true or false`);
    case "string":
      return text;
    case "bytes":
      return await parseBytes(text, where);
  }
}

/** A guest function's signature as text: `Add(i32, i32) -> i32`. */
export function formatSignature(f: { name: string; params: readonly string[]; returns: string }): string {
  return `${f.name}(${f.params.join(", ")}) -> ${f.returns}`;
}

/**
 * Parses all arguments of a call to `fn`, checking their number first.
 */
export async function parseCallArgs(
  fn: { name: string; params: readonly ValueType[]; returns: string },
  texts: readonly string[],
): Promise<Value[]> {
  if (texts.length !== fn.params.length) {
    throw new UsageError(
      `${fn.name} takes ${fn.params.length} argument${
        fn.params.length === 1 ? "" : "s"
      }, got ${texts.length}: ${formatSignature(fn)}`,
    );
  }
  const out: Value[] = [];
  for (const [i, t] of texts.entries()) {
    out.push(await parseValue(t, fn.params[i], `argument ${i + 1} of ${fn.name}`));
  }
  return out;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A result as text: numbers and bigints in decimal, strings as they are, bytes as hex, `void` as nothing.
 * With `json`, a JSON value instead (bigints as decimal strings, bytes as a hex string).
 */
export function formatValue(value: Value, type: ReturnType, json = false): string {
  if (json) {
    if (value === undefined) return "null";
    if (typeof value === "bigint") return JSON.stringify(value.toString());
    if (value instanceof Uint8Array) return JSON.stringify(toHex(value));
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value));
    return JSON.stringify(value);
  }
  if (type === "void" || value === undefined) return "";
  if (value instanceof Uint8Array) return toHex(value);
  return String(value);
}
