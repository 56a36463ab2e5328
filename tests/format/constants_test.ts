// Pins every number the file format and its loader depend on. Changing one of them changes the byte layout
// (bump HLS_FORMAT_VERSION) or the meaning of the blob (bump the ABI version): update this test only together
// with that bump.
import assert from "node:assert/strict";
import * as format from "../../format/mod.ts";

Deno.test("byte layout constants (docs/FORMAT.md)", () => {
  assert.equal(format.HLS_MAGIC, 0x00534c48);
  assert.equal(format.HLS_FORMAT_VERSION, 2);
  assert.equal(format.HLS_FORMAT_VERSION_1, 1);
  assert.equal(format.HLS_FORMAT_VERSION_2, 2);
  assert.equal(format.HEADER_OFFSET, 8);
  assert.equal(format.HEADER_SIZE, 19 * 8);
  assert.equal(format.SREGS_OFFSET, format.HEADER_OFFSET + format.HEADER_SIZE);
  assert.equal(format.SREGS_SIZE, 119 * 8);
  assert.equal(format.HEADER_HASH_OFFSET, format.SREGS_OFFSET + format.SREGS_SIZE);
  assert.equal(format.HEADER_HASH_OFFSET, 1112);
  assert.equal(format.HASH_SIZE, 32);
  assert.equal(format.BLOB_HASH_OFFSET, 1144);
  assert.equal(format.HOST_FUNCS_OFFSET, 1176);
  assert.equal(format.FILE_PAGE_SIZE, 4096);
  assert.equal(format.TRAILING_GUARD_SIZE, 4096);
});

Deno.test("header fields are in spec order", () => {
  assert.deepEqual(format.HEADER_FIELDS.map(([name]) => name), [
    "arch",
    "abi_version",
    "stack_top_gva",
    "entrypoint_tag",
    "entrypoint_addr",
    "input_data_size",
    "output_data_size",
    "heap_size",
    "code_size",
    "init_data_size",
    "init_data_permissions",
    "scratch_size",
    "snapshot_size",
    "pt_size",
    "memory_size",
    "memory_offset",
    "has_sregs",
    "hypervisor",
    "host_funcs_size",
  ]);
  assert.deepEqual(format.SEGMENT_NAMES, ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"]);
});

Deno.test("tag values", () => {
  assert.deepEqual(format.Arch, { X86_64: 1, AARCH64: 2, I686: 3 });
  assert.deepEqual(format.Hypervisor, { KVM: 1, MSHV: 2, WHP: 3 });
  assert.deepEqual(format.EntrypointTag, { Initialise: 0, Call: 1 });
  assert.deepEqual(format.InitDataPermission, { READ: 1, WRITE: 2, EXECUTE: 4 });
  assert.deepEqual(format.ValueTag, {
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
  });
});

Deno.test("loader limits", () => {
  assert.equal(format.MAX_HOST_FUNCS_SIZE, 1024 * 1024);
  assert.equal(format.MAX_HOST_FUNCTIONS, 4096);
  assert.equal(format.MAX_HOST_FUNCTION_NAME_BYTES, 256);
  assert.equal(format.MAX_HOST_FUNCTION_PARAMS, 64);
  assert.equal(format.MAX_MEMORY_OFFSET, 1024 * 1024 + 4096);
  assert.equal(format.MAX_MEMORY_SIZE, 1024 * 1024 * 1024);
  // The largest file a loader reads into memory: prefix, blob and guard at their limits.
  assert.equal(format.MAX_SNAPSHOT_FILE_SIZE, 1024 * 1024 + 4096 + 1024 * 1024 * 1024 + 4096);
  assert.equal(format.MAX_IO_BUFFER_SIZE, 256 * 1024 * 1024);
  assert.equal(format.MIN_INPUT_DATA_SIZE, 72);
  assert.equal(format.MIN_OUTPUT_DATA_SIZE, 12);
});

Deno.test("version 2 section constants", () => {
  assert.equal(format.SECTION_TABLE_HEADER_SIZE, 8);
  assert.equal(format.SECTION_HEADER_SIZE, 8);
  assert.equal(format.MAX_SECTIONS, 16);
  assert.equal(format.MAX_SECTIONS_SIZE, 1024 * 1024);
  assert.equal(format.OPTIONAL_SECTION_BIT, 0x8000_0000);
  assert.equal(format.MAX_BINARY_PATH_BYTES, 4096);
  assert.equal(format.MAX_BASE_FILE_NAME_BYTES, 255);
  assert.equal(format.MAX_DELTA_RUNS, 4096);
  assert.equal(format.MAX_DELTA_CHAIN, 8);
  assert.equal(format.MAX_WORKING_SET_RUNS, 16384);
  assert.deepEqual(format.SectionType, { Binary: 1, Base: 2, WorkingSet: 3 });
});

Deno.test("layout facts the loader checks (docs/ABI.md); the ABI's fixed addresses come from the caller", () => {
  assert.equal(format.GUEST_PAGE_SIZE, 4096);
  assert.equal(format.MIN_PT_SIZE, 4 * 4096);
  assert.equal(format.STACK_GUARD_SIZE, 4096);
  assert.equal(format.STACK_ALIGNMENT, 16);
});

Deno.test("SnapshotFormatError kinds are stable", () => {
  assert.deepEqual(format.SNAPSHOT_FORMAT_ERROR_KINDS, [
    "BadMagic",
    "UnsupportedFormatVersion",
    "AbiMismatch",
    "ArchMismatch",
    "HypervisorMismatch",
    "Truncated",
    "InvalidField",
    "HeaderHashMismatch",
    "BlobHashMismatch",
    "HostFunctionsTooLarge",
    "BaseNotFound",
    "BaseMismatch",
    "ChainTooLong",
  ]);
  const error = new format.SnapshotFormatError("InvalidField", {
    field: "memory_offset",
    found: 4097n,
    expected: "a multiple of 4096",
  });
  assert.ok(error instanceof Error);
  assert.equal(error.name, "SnapshotFormatError");
  assert.equal(
    error.message,
    "Cannot load snapshot: header field memory_offset is 4097, expected a multiple of 4096",
  );
  assert.deepEqual([error.kind, error.field, error.found, error.expected], [
    "InvalidField",
    "memory_offset",
    4097n,
    "a multiple of 4096",
  ]);
});
