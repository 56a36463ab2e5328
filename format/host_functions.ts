/**
 * The host-functions section of an `.hls` file: the signatures of the host functions the guest was built
 * against, so that a loader can check that the host still provides them.
 *
 * ## Encoding (all integers little-endian, no alignment)
 *
 * An empty list is an empty section (`host_funcs_size` = 0). Otherwise:
 *
 * ```
 * u32 count                      1 .. MAX_HOST_FUNCTIONS (4096)
 * count × {
 *   u32 name_len                 1 .. MAX_HOST_FUNCTION_NAME_BYTES (256)
 *   name_len bytes name          UTF-8, well-formed, unique within the section
 *   u8  return tag               0 .. 9 (ABI.md "Values"; 0 = void)
 *   u32 param_count              0 .. MAX_HOST_FUNCTION_PARAMS (64)
 *   param_count × u8 param tag   1 .. 9 (void is not a parameter type)
 * }
 * ```
 *
 * The section must end exactly after the last function and be at most `MAX_HOST_FUNCS_SIZE` (1 MiB). The
 * per-function layout is the same as a function's entry in the guest's LIST answer (ABI.md "Messages").
 *
 * @module
 */

import {
  HOST_FUNCS_OFFSET,
  MAX_HOST_FUNCS_SIZE,
  MAX_HOST_FUNCTION_NAME_BYTES,
  MAX_HOST_FUNCTION_PARAMS,
  MAX_HOST_FUNCTIONS,
} from "./constants.ts";
import { type SnapshotAction, SnapshotFormatError } from "./errors.ts";
import { ByteReader } from "./_reader.ts";
import { ByteWriter } from "./_writer.ts";
import { toHex } from "./_hex.ts";

/**
 * Type tags of guest/host values (docs/ABI.md, "Values").
 *
 * @example
 * ```ts
 * import { ValueTag } from "./host_functions.ts";
 *
 * console.log(ValueTag.String); // 8
 * ```
 */
export const ValueTag = {
  Void: 0,
  I32: 1,
  U32: 2,
  I64: 3,
  U64: 4,
  F32: 5,
  F64: 6,
  Bool: 7,
  String: 8,
  Bytes: 9,
} as const;
/**
 * A value of {@linkcode ValueTag}.
 *
 * @example
 * ```ts
 * import { ValueTag } from "./host_functions.ts";
 *
 * const tag: ValueTag = ValueTag.I32;
 * console.log(tag); // 1
 * ```
 */
export type ValueTag = typeof ValueTag[keyof typeof ValueTag];

/**
 * Names of {@linkcode ValueTag} values as signatures show them.
 *
 * @example
 * ```ts
 * import { VALUE_TAG_NAMES } from "./host_functions.ts";
 *
 * console.log(VALUE_TAG_NAMES[8]); // string
 * ```
 */
export const VALUE_TAG_NAMES: Readonly<Record<ValueTag, string>> = {
  0: "void",
  1: "i32",
  2: "u32",
  3: "i64",
  4: "u64",
  5: "f32",
  6: "f64",
  7: "bool",
  8: "string",
  9: "bytes",
};

const MAX_VALUE_TAG = 9;

/**
 * The signature of one host function.
 *
 * @example
 * ```ts
 * import { type HostFunction, ValueTag } from "./host_functions.ts";
 *
 * const print: HostFunction = { name: "HostPrint", returnType: ValueTag.I32, parameterTypes: [ValueTag.String] };
 * console.log(print.name);
 * ```
 */
export interface HostFunction {
  /** The name the guest calls it by. */
  name: string;
  /** Tag of the result (`Void` for none). */
  returnType: ValueTag;
  /** Tags of the parameters, in order; never `Void`. */
  parameterTypes: readonly ValueTag[];
}

/**
 * Renders a signature the way docs/ABI.md writes them.
 *
 * @param fn The host function.
 * @returns For example `HostPrint(string) -> i32`.
 *
 * @example
 * ```ts
 * import { formatHostFunctionSignature, ValueTag } from "./host_functions.ts";
 *
 * const text = formatHostFunctionSignature({
 *   name: "HostPrint",
 *   returnType: ValueTag.I32,
 *   parameterTypes: [ValueTag.String],
 * });
 * console.log(text); // HostPrint(string) -> i32
 * ```
 */
export function formatHostFunctionSignature(fn: HostFunction): string {
  const params = fn.parameterTypes.map((tag) => VALUE_TAG_NAMES[tag] ?? `tag${tag}`).join(", ");
  return `${fn.name}(${params}) -> ${VALUE_TAG_NAMES[fn.returnType] ?? `tag${fn.returnType}`}`;
}

const utf8Encoder = new TextEncoder();
// fatal: malformed UTF-8 is an error, not U+FFFD; ignoreBOM: a leading U+FEFF is part of the name.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function invalid(
  action: SnapshotAction,
  field: string,
  found: string | number | bigint,
  expected: string,
): never {
  throw new SnapshotFormatError("InvalidField", { field, found, expected, action });
}

function checkReturnTag(action: SnapshotAction, field: string, tag: number): ValueTag {
  if (!Number.isInteger(tag) || tag < 0 || tag > MAX_VALUE_TAG) {
    invalid(action, field, tag, `a value tag 0..${MAX_VALUE_TAG}`);
  }
  return tag as ValueTag;
}

function checkParamTag(action: SnapshotAction, field: string, tag: number): ValueTag {
  if (!Number.isInteger(tag) || tag < 1 || tag > MAX_VALUE_TAG) {
    invalid(action, field, tag, `a value tag 1..${MAX_VALUE_TAG} (void is not a parameter type)`);
  }
  return tag as ValueTag;
}

function checkNameLength(action: SnapshotAction, field: string, length: number): void {
  if (length < 1 || length > MAX_HOST_FUNCTION_NAME_BYTES) {
    invalid(action, field, `${length} bytes long`, `1..${MAX_HOST_FUNCTION_NAME_BYTES} bytes of UTF-8`);
  }
}

function checkCount(action: SnapshotAction, count: number): void {
  if (count > MAX_HOST_FUNCTIONS) {
    invalid(action, "host_functions.count", count, `at most ${MAX_HOST_FUNCTIONS}`);
  }
}

function checkParamCount(action: SnapshotAction, field: string, count: number): void {
  if (count > MAX_HOST_FUNCTION_PARAMS) invalid(action, field, count, `at most ${MAX_HOST_FUNCTION_PARAMS}`);
}

/**
 * Encodes host-function signatures as a host-functions section (format in the module documentation).
 *
 * @param functions The signatures, in the order to store them.
 * @returns The section bytes; empty for an empty list.
 * @throws {SnapshotFormatError} `InvalidField` for a signature the loader would refuse (empty, too long,
 *   ill-formed or duplicate name, bad tag, too many parameters or functions), `HostFunctionsTooLarge` if the
 *   section would exceed 1 MiB. Messages start with "Cannot save snapshot".
 *
 * @example
 * ```ts
 * import { decodeHostFunctions, encodeHostFunctions, ValueTag } from "./host_functions.ts";
 *
 * const section = encodeHostFunctions([
 *   { name: "HostPrint", returnType: ValueTag.I32, parameterTypes: [ValueTag.String] },
 * ]);
 * console.log(section.length, decodeHostFunctions(section)[0].name); // 24 HostPrint
 * ```
 */
export function encodeHostFunctions(functions: readonly HostFunction[]): Uint8Array {
  const action = "save";
  if (functions.length === 0) return new Uint8Array(0);
  checkCount(action, functions.length);
  const names = new Set<string>();
  const encodedNames: Uint8Array[] = [];
  let size = 4;
  functions.forEach((fn, i) => {
    const field = `host_functions[${i}]`;
    // A lone surrogate would be silently replaced by U+FFFD when encoded, storing a different name.
    if (typeof fn.name !== "string" || !fn.name.isWellFormed()) {
      invalid(action, `${field}.name`, JSON.stringify(fn.name), "a well-formed Unicode string");
    }
    const name = utf8Encoder.encode(fn.name);
    checkNameLength(action, `${field}.name`, name.byteLength);
    if (names.has(fn.name)) {
      invalid(
        action,
        `${field}.name`,
        JSON.stringify(fn.name),
        "a name not used by an earlier host function",
      );
    }
    names.add(fn.name);
    checkReturnTag(action, `${field}.return_tag`, fn.returnType);
    checkParamCount(action, `${field}.param_count`, fn.parameterTypes.length);
    fn.parameterTypes.forEach((tag, j) => checkParamTag(action, `${field}.params[${j}]`, tag));
    encodedNames.push(name);
    size += 4 + name.byteLength + 1 + 4 + fn.parameterTypes.length;
  });
  if (size > MAX_HOST_FUNCS_SIZE) {
    throw new SnapshotFormatError("HostFunctionsTooLarge", {
      field: "host_funcs_size",
      found: size,
      expected: `at most ${MAX_HOST_FUNCS_SIZE} bytes`,
      action,
    });
  }
  const bytes = new Uint8Array(size);
  const writer = new ByteWriter(bytes);
  writer.u32(functions.length);
  functions.forEach((fn, i) => {
    writer.u32(encodedNames[i].byteLength);
    writer.bytes(encodedNames[i]);
    writer.u8(fn.returnType);
    writer.u32(fn.parameterTypes.length);
    for (const tag of fn.parameterTypes) writer.u8(tag);
  });
  return bytes;
}

/**
 * Options of {@linkcode decodeHostFunctions}.
 *
 * @example
 * ```ts
 * import type { DecodeHostFunctionsOptions } from "./host_functions.ts";
 *
 * const options: DecodeHostFunctionsOptions = { fileOffset: 1176 };
 * console.log(options);
 * ```
 */
export interface DecodeHostFunctionsOptions {
  /** File offset of the section, for error messages. Defaults to 1176. */
  fileOffset?: number;
  /** Only changes the error message prefix. Defaults to `"load"`. */
  action?: SnapshotAction;
}

/**
 * Decodes and checks a host-functions section.
 *
 * @param bytes Exactly the section (`host_funcs_size` bytes).
 * @param options File offset and action for error messages.
 * @returns The signatures in stored order.
 * @throws {SnapshotFormatError} `HostFunctionsTooLarge` above 1 MiB; `Truncated` when an entry runs past the
 *   section end; `InvalidField` for a bad count, name, tag or trailing bytes.
 *
 * @example
 * ```ts
 * import { decodeHostFunctions } from "./host_functions.ts";
 *
 * console.log(decodeHostFunctions(new Uint8Array(0))); // []
 * ```
 */
export function decodeHostFunctions(
  bytes: Uint8Array,
  options: DecodeHostFunctionsOptions = {},
): HostFunction[] {
  const action = options.action ?? "load";
  if (bytes.byteLength > MAX_HOST_FUNCS_SIZE) {
    throw new SnapshotFormatError("HostFunctionsTooLarge", {
      field: "host_funcs_size",
      found: bytes.byteLength,
      expected: `at most ${MAX_HOST_FUNCS_SIZE} bytes`,
      action,
    });
  }
  if (bytes.byteLength === 0) return [];
  const reader = new ByteReader(bytes, { fileOffset: options.fileOffset ?? HOST_FUNCS_OFFSET, action });
  const count = reader.u32("host_functions.count");
  if (count === 0) {
    invalid(action, "host_functions.count", 0, "at least 1 (an empty list is an empty section)");
  }
  checkCount(action, count);
  const functions: HostFunction[] = [];
  const names = new Set<string>();
  for (let i = 0; i < count; i++) {
    const field = `host_functions[${i}]`;
    const nameLength = reader.u32(`${field}.name_len`);
    checkNameLength(action, `${field}.name_len`, nameLength);
    const nameBytes = reader.bytes(nameLength, `${field}.name`);
    let name: string;
    try {
      name = utf8Decoder.decode(nameBytes);
    } catch {
      invalid(action, `${field}.name`, `bytes ${toHex(nameBytes)}`, "well-formed UTF-8");
    }
    if (names.has(name)) {
      invalid(action, `${field}.name`, JSON.stringify(name), "a name not used by an earlier host function");
    }
    names.add(name);
    const returnType = checkReturnTag(action, `${field}.return_tag`, reader.u8(`${field}.return_tag`));
    const paramCount = reader.u32(`${field}.param_count`);
    checkParamCount(action, `${field}.param_count`, paramCount);
    const parameterTypes: ValueTag[] = [];
    for (let j = 0; j < paramCount; j++) {
      parameterTypes.push(checkParamTag(action, `${field}.params[${j}]`, reader.u8(`${field}.params[${j}]`)));
    }
    functions.push({ name, returnType, parameterTypes });
  }
  if (reader.remaining !== 0) {
    invalid(
      action,
      "host_functions",
      `${reader.remaining} bytes after the last function`,
      "no trailing bytes",
    );
  }
  return functions;
}
