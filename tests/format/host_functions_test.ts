import assert from "node:assert/strict";
import {
  decodeHostFunctions,
  encodeHostFunctions,
  formatHostFunctionSignature,
  type HostFunction,
  MAX_HOST_FUNCTION_NAME_BYTES,
  MAX_HOST_FUNCTION_PARAMS,
  MAX_HOST_FUNCTIONS,
  SnapshotFormatError,
  ValueTag,
} from "../../format/mod.ts";

const SAMPLE: HostFunction[] = [
  { name: "HostPrint", returnType: ValueTag.I32, parameterTypes: [ValueTag.String] },
  { name: "\uFEFFbom_first", returnType: ValueTag.Void, parameterTypes: [] },
  { name: "日本語", returnType: ValueTag.F64, parameterTypes: [ValueTag.F32, ValueTag.Bool, ValueTag.Bytes] },
];

Deno.test("the section encoding is the documented one", () => {
  const bytes = encodeHostFunctions([SAMPLE[0]]);
  // u32 count, u32 name_len, name, u8 return tag, u32 param_count, param tags
  assert.deepEqual(
    [...bytes],
    [1, 0, 0, 0, 9, 0, 0, 0, ...new TextEncoder().encode("HostPrint"), 1, 1, 0, 0, 0, 8],
  );
  assert.equal(encodeHostFunctions([]).length, 0, "an empty list is an empty section");
});

Deno.test("host functions round-trip, keeping order, Unicode and a leading BOM", () => {
  assert.deepEqual(decodeHostFunctions(encodeHostFunctions(SAMPLE)), SAMPLE);
  assert.deepEqual(decodeHostFunctions(new Uint8Array(0)), []);
});

Deno.test("limits are inclusive", () => {
  const longest: HostFunction = {
    name: "n".repeat(MAX_HOST_FUNCTION_NAME_BYTES),
    returnType: ValueTag.Bytes,
    parameterTypes: Array(MAX_HOST_FUNCTION_PARAMS).fill(ValueTag.U64),
  };
  assert.deepEqual(decodeHostFunctions(encodeHostFunctions([longest])), [longest]);
  const most = Array.from({ length: MAX_HOST_FUNCTIONS }, (_, i) => ({
    name: `f${i}`,
    returnType: ValueTag.Void,
    parameterTypes: [],
  }));
  assert.equal(decodeHostFunctions(encodeHostFunctions(most)).length, MAX_HOST_FUNCTIONS);
});

Deno.test("encodeHostFunctions refuses what the loader would refuse", () => {
  const refuse = (functions: HostFunction[], field: string) =>
    assert.throws(() => encodeHostFunctions(functions), (error: unknown) => {
      assert.ok(error instanceof SnapshotFormatError);
      assert.equal(error.kind, "InvalidField", error.message);
      assert.equal(error.field, field, error.message);
      assert.match(error.message, /^Cannot save snapshot: /);
      return true;
    });
  const fn = (name: string, returnType = 0, parameterTypes: number[] = []) =>
    ({ name, returnType, parameterTypes }) as HostFunction;
  refuse([fn("")], "host_functions[0].name");
  refuse([fn("é".repeat(129))], "host_functions[0].name"); // 258 UTF-8 bytes
  refuse([fn("lone\uD800surrogate")], "host_functions[0].name");
  refuse([fn("a"), fn("b"), fn("a")], "host_functions[2].name");
  refuse([fn("a", 10)], "host_functions[0].return_tag");
  refuse([fn("a", -1)], "host_functions[0].return_tag");
  refuse([fn("a", 0, [1, 0])], "host_functions[0].params[1]");
  refuse([fn("a", 0, Array(MAX_HOST_FUNCTION_PARAMS + 1).fill(1))], "host_functions[0].param_count");
  refuse(Array.from({ length: MAX_HOST_FUNCTIONS + 1 }, (_, i) => fn(`f${i}`)), "host_functions.count");
});

Deno.test("formatHostFunctionSignature writes signatures like docs/ABI.md", () => {
  assert.equal(formatHostFunctionSignature(SAMPLE[0]), "HostPrint(string) -> i32");
  assert.equal(formatHostFunctionSignature(SAMPLE[2]), "日本語(f32, bool, bytes) -> f64");
  assert.equal(formatHostFunctionSignature(SAMPLE[1]), "\uFEFFbom_first() -> void");
});
