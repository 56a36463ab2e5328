/**
 * Value types shared by guest and host functions.
 *
 * @module
 */

/**
 * A parameter type. JavaScript values: `i32 u32 f32 f64` ↔ `number`, `i64 u64` ↔ `bigint`,
 * `bool` ↔ `boolean`, `string` ↔ `string`, `bytes` ↔ `Uint8Array`.
 *
 * @example
 * ```ts
 * import type { ValueType } from "./types.ts";
 * const t: ValueType = "i32";
 * ```
 */
export type ValueType = "i32" | "u32" | "i64" | "u64" | "f32" | "f64" | "bool" | "string" | "bytes";

/**
 * A return type: any {@linkcode ValueType}, or `"void"` (↔ `undefined`).
 *
 * @example
 * ```ts
 * import type { ReturnType } from "./types.ts";
 * const t: ReturnType = "void";
 * ```
 */
export type ReturnType = ValueType | "void";

/**
 * The JavaScript value of a guest/host value.
 *
 * @example
 * ```ts
 * import type { Value } from "./types.ts";
 * const v: Value = 42n;
 * ```
 */
export type Value = number | bigint | boolean | string | Uint8Array | undefined;

/**
 * A function signature.
 *
 * @example
 * ```ts
 * import type { Signature } from "./types.ts";
 * const add: Signature = { params: ["i32", "i32"], returns: "i32" };
 * ```
 */
export interface Signature {
  /** Parameter types, in order. */
  readonly params: readonly ValueType[];
  /** Return type. */
  readonly returns: ReturnType;
}

/**
 * A guest function as the guest registered it.
 *
 * @example
 * ```ts
 * import type { GuestFunctionInfo } from "./types.ts";
 * const f: GuestFunctionInfo = { name: "Echo", params: ["string"], returns: "string" };
 * ```
 */
export interface GuestFunctionInfo extends Signature {
  /** The function's name. */
  readonly name: string;
}
