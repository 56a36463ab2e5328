/**
 * Reading the guest's function list (docs/ABI.md: LIST result and init result).
 *
 * @module
 */
import { ProtocolError, type Reader } from "./codec.ts";
import { MAX_FUNCTION_NAME, MAX_PARAMS } from "../host_functions.ts";
import type { GuestFunctionInfo, ValueType } from "../types.ts";

/** Most guest functions accepted in one list. */
export const MAX_GUEST_FUNCTIONS = 4096;

/** Reads `u32 count` then the function descriptions; rejects anything malformed. */
export function readFunctionList(r: Reader): Map<string, GuestFunctionInfo> {
  const count = r.u32("function count");
  if (count > MAX_GUEST_FUNCTIONS) {
    throw new ProtocolError(`function count is ${count}, at most ${MAX_GUEST_FUNCTIONS} allowed`);
  }
  const out = new Map<string, GuestFunctionInfo>();
  for (let i = 0; i < count; i++) {
    const name = r.string(`function ${i} name`);
    if (name.length === 0 || name.length > MAX_FUNCTION_NAME) {
      throw new ProtocolError(
        `function ${i} name has length ${name.length}, expected 1 to ${MAX_FUNCTION_NAME}`,
      );
    }
    if (out.has(name)) throw new ProtocolError(`function ${name} is registered twice`);
    const returns = r.tag(`function ${name} return`);
    const n = r.u32(`function ${name} parameter count`);
    if (n > MAX_PARAMS) {
      throw new ProtocolError(`function ${name} has ${n} parameters, at most ${MAX_PARAMS} allowed`);
    }
    const params: ValueType[] = [];
    for (let p = 0; p < n; p++) {
      const t = r.tag(`function ${name} parameter ${p}`);
      if (t === "void") throw new ProtocolError(`function ${name} parameter ${p} has type void`);
      params.push(t);
    }
    out.set(name, Object.freeze({ name, params: Object.freeze(params), returns }));
  }
  return out;
}
