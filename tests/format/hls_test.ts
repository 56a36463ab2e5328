import assert from "node:assert/strict";
import { MEMORY_MAP } from "../../vm/machine/abi.ts";
import {
  Arch,
  blake3,
  encodeSnapshotPrefix,
  EntrypointTag,
  HEADER_FIELDS,
  type HeaderFieldName,
  type HostFunction,
  Hypervisor,
  MAX_HOST_FUNCS_SIZE,
  parseSnapshotHeader,
  SNAPSHOT_FORMAT_ERROR_KINDS,
  SnapshotFormatError,
  type SnapshotFormatErrorKind,
  type SnapshotHeaderFields,
  snapshotPrefixLength,
  type Sregs,
  ValueTag,
  verifyBlobHash,
} from "../../format/mod.ts";
import { expectError, fields, HOST, MEMORY_SIZE } from "./_header_fixture.ts";

// ---- Fixture: a layout that follows docs/ABI.md (./_header_fixture.ts) --------------------------------------

function segment(selector: number, type: number, extra: Partial<Sregs["cs"]> = {}): Sregs["cs"] {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type,
    present: 1,
    dpl: 3,
    db: 0,
    s: 1,
    l: 0,
    g: 1,
    avl: 0,
    unusable: 0,
    ...extra,
  };
}

/** Special registers as snapvm sets them (docs/ABI.md, "Segments and control registers"). */
function abiSregs(): Sregs {
  const unusable = { present: 0, unusable: 1, dpl: 0, g: 0, limit: 0 };
  return {
    cs: segment(0x33, 11, { l: 1 }),
    ds: segment(0, 3, unusable),
    es: segment(0, 3, unusable),
    fs: segment(0, 3, { ...unusable, base: 0x7fff_0000_1000n }),
    gs: segment(0, 3, unusable),
    ss: segment(0x2b, 3, { db: 1 }),
    tr: segment(0x38, 11, { base: 0x1100n, limit: 0x67 + 33, s: 0, dpl: 0, g: 0 }),
    ldt: segment(0, 2, { present: 0, unusable: 1, dpl: 0, s: 0, g: 0, limit: 0 }),
    gdt: { base: 0x1000n, limit: 9 * 8 - 1 },
    idt: { base: 0x1800n, limit: 32 * 16 - 1 },
    cr0: 0x80050033n,
    cr2: 0xdead_beef_f00dn,
    cr3: 0x5000n,
    cr4: 0x620n,
    cr8: 0n,
    efer: 0xd01n,
    apicBase: 0xfee00900n,
    interruptBitmap: [0n, 1n << 63n, 0n, 0xffff_ffff_ffff_ffffn],
  };
}

const HOST_FUNCTIONS: HostFunction[] = [
  { name: "HostPrint", returnType: ValueTag.I32, parameterTypes: [ValueTag.String] },
  { name: "Größe_🦀", returnType: ValueTag.Void, parameterTypes: [] },
  {
    name: "all_types",
    returnType: ValueTag.Bytes,
    parameterTypes: [1, 2, 3, 4, 5, 6, 7, 8, 9] as ValueTag[],
  },
];

function makeBlob(size = MEMORY_SIZE): Uint8Array {
  const blob = new Uint8Array(size);
  for (let i = 0; i < size; i += 4093) blob[i] = (i * 7) & 0xff;
  return blob;
}

interface Fixture {
  prefix: Uint8Array;
  blob: Uint8Array;
  fileLength: number;
}

function fixture(
  options: { call?: boolean; hostFunctions?: HostFunction[]; header?: Partial<SnapshotHeaderFields> } = {},
): Fixture {
  const blob = makeBlob();
  const call = options.call ?? false;
  const prefix = encodeSnapshotPrefix({
    header: fields({
      entrypointTag: call ? EntrypointTag.Call : EntrypointTag.Initialise,
      entrypointAddr: call ? 0x2004a0 : 0x200123,
      ...options.header,
    }),
    sregs: call ? abiSregs() : null,
    hostFunctions: options.hostFunctions ?? [],
    blobHash: blake3(blob),
    memoryMap: MEMORY_MAP,
  });
  return { prefix, blob, fileLength: prefix.length + blob.length + 4096 };
}

function fieldOffset(name: HeaderFieldName): number {
  return 8 + 8 * HEADER_FIELDS.findIndex(([field]) => field === name);
}

function setField(bytes: Uint8Array, name: HeaderFieldName, value: bigint | number): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(fieldOffset(name), BigInt(value), true);
  return bytes;
}

function getField(bytes: Uint8Array, name: HeaderFieldName): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(fieldOffset(name), true);
}

/** Recomputes header_hash from the spec's definition, independently of the module's own helper. */
function rehash(bytes: Uint8Array): Uint8Array {
  const hostFuncsSize = Number(getField(bytes, "host_funcs_size"));
  const message = new Uint8Array(1112 + 32 + hostFuncsSize);
  message.set(bytes.subarray(0, 1112), 0);
  message.set(bytes.subarray(1144, 1176 + hostFuncsSize), 1112);
  bytes.set(blake3(message), 1112);
  return bytes;
}

const BIG_FILE = 1n << 40n; // for tests that grow sizes: the file-length check is not what they test

// ---- Round trips ---------------------------------------------------------------------------------------------

Deno.test("an Initialise snapshot without sregs round-trips", () => {
  const { prefix, blob, fileLength } = fixture();
  assert.equal(prefix.length, 4096);
  const parsed = parseSnapshotHeader(prefix, fileLength, HOST);
  assert.equal(parsed.formatVersion, 1);
  assert.deepEqual(parsed.header, { ...fields(), hasSregs: 0, hostFuncsSize: 0, memoryOffset: 4096 });
  assert.equal(parsed.sregs, null);
  assert.deepEqual(parsed.hostFunctions, []);
  assert.deepEqual(parsed.blobHash, blake3(blob));
  assert.deepEqual(parsed.headerHash, rehash(prefix.slice()).subarray(1112, 1144));
  verifyBlobHash(blob, parsed.blobHash);
  // Special registers are written as zeros when absent, and the padding up to memory_offset is zero.
  assert.ok(prefix.subarray(160, 1112).every((byte) => byte === 0));
  assert.ok(prefix.subarray(1176).every((byte) => byte === 0));
});

Deno.test("a Call snapshot with sregs and host functions round-trips", () => {
  const { prefix, fileLength } = fixture({ call: true, hostFunctions: HOST_FUNCTIONS });
  const parsed = parseSnapshotHeader(prefix, BigInt(fileLength), HOST);
  assert.equal(parsed.header.hasSregs, 1);
  assert.equal(parsed.header.entrypointTag, EntrypointTag.Call);
  assert.deepEqual(parsed.sregs, abiSregs());
  assert.deepEqual(parsed.hostFunctions, HOST_FUNCTIONS);
  assert.equal(parsed.header.hostFuncsSize, snapshotPrefixLength(prefix) - 1176);
});

Deno.test("a large host-functions section moves memory_offset to the next page", () => {
  const many: HostFunction[] = Array.from({ length: 40 }, (_, i) => ({
    name: `function_${i}_${"x".repeat(200)}`,
    returnType: ValueTag.U64,
    parameterTypes: [ValueTag.Bytes, ValueTag.F64],
  }));
  const { prefix, fileLength } = fixture({ hostFunctions: many });
  const size = Number(getField(prefix, "host_funcs_size"));
  assert.ok(size > 4096);
  assert.equal(prefix.length, Math.ceil((1176 + size) / 4096) * 4096);
  assert.equal(snapshotPrefixLength(prefix.subarray(0, 1176)), 1176 + size);
  assert.deepEqual(parseSnapshotHeader(prefix, fileLength, HOST).hostFunctions, many);
});

Deno.test("the byte layout follows docs/FORMAT.md", () => {
  const { prefix, blob } = fixture({ call: true });
  const view = new DataView(prefix.buffer);
  assert.deepEqual([...prefix.subarray(0, 4)], [0x48, 0x4c, 0x53, 0x00]);
  assert.equal(view.getUint32(4, true), 1);
  const expected: Record<HeaderFieldName, number> = {
    arch: 1,
    abi_version: 1,
    stack_top_gva: 0x21f000,
    entrypoint_tag: 1,
    entrypoint_addr: 0x2004a0,
    input_data_size: 0x1000,
    output_data_size: 0x1000,
    heap_size: 0x10000,
    code_size: 0x5432,
    init_data_size: 0,
    init_data_permissions: 0,
    scratch_size: 0xa000,
    snapshot_size: MEMORY_SIZE,
    pt_size: 0x5000,
    memory_size: MEMORY_SIZE,
    memory_offset: 4096,
    has_sregs: 1,
    hypervisor: 1,
    host_funcs_size: 0,
  };
  const order = Object.keys(expected);
  order.forEach((name, i) => {
    assert.equal(view.getBigUint64(8 + 8 * i, true), BigInt(expected[name as HeaderFieldName]), name);
  });
  // Sregs: cs = 13 u64 at 160 (base, limit, selector, type, present, dpl, db, s, l, g, avl, unusable, padding).
  const u64 = (offset: number) => view.getBigUint64(offset, true);
  assert.deepEqual(
    Array.from({ length: 13 }, (_, i) => u64(160 + 8 * i)),
    [0n, 0xffffffffn, 0x33n, 11n, 1n, 3n, 0n, 1n, 1n, 1n, 0n, 0n, 0n],
  );
  const afterSegments = 160 + 8 * 13 * 8;
  assert.equal(u64(afterSegments), 0x1000n); // gdt.base
  assert.equal(u64(afterSegments + 8), 71n); // gdt.limit
  assert.equal(u64(afterSegments + 16), 0x1800n); // idt.base
  assert.equal(u64(afterSegments + 32), 0x80050033n); // cr0
  assert.equal(u64(afterSegments + 32 + 16), 0x5000n); // cr3
  assert.equal(u64(afterSegments + 32 + 40), 0xd01n); // efer
  assert.equal(u64(1112 - 8), 0xffff_ffff_ffff_ffffn); // interrupt_bitmap[3], the last sregs word
  assert.deepEqual(prefix.subarray(1144, 1176), blake3(blob));
});

Deno.test("parseSnapshotHeader accepts the whole file and does not need the padding", () => {
  const { prefix, blob, fileLength } = fixture();
  const file = new Uint8Array(fileLength);
  file.set(prefix);
  file.set(blob, prefix.length);
  assert.equal(parseSnapshotHeader(file, fileLength, HOST).header.memorySize, MEMORY_SIZE);
  assert.equal(parseSnapshotHeader(prefix.subarray(0, 1176), fileLength, HOST).header.memoryOffset, 4096);
  // A longer file (trailing bytes after the guard) is accepted.
  parseSnapshotHeader(prefix, fileLength + 1, HOST);
});

// ---- Every error kind ---------------------------------------------------------------------------------------

Deno.test("BadMagic", () => {
  const { prefix, fileLength } = fixture();
  prefix[3] = 0x01;
  expectError(
    () => parseSnapshotHeader(prefix, fileLength, HOST),
    "BadMagic",
    "magic",
    'Cannot load snapshot: preamble field magic is bytes 48 4c 53 01, expected 48 4c 53 00 ("HLS\\0")',
  );
  expectError(() => parseSnapshotHeader(new TextEncoder().encode("\x7fELF...."), 8, HOST), "BadMagic");
});

Deno.test("UnsupportedFormatVersion says the file may be convertible", () => {
  for (const version of [0, 3, 0xffff_ffff]) {
    const { prefix, fileLength } = fixture();
    new DataView(prefix.buffer).setUint32(4, version, true);
    expectError(
      () => parseSnapshotHeader(prefix, fileLength, HOST),
      "UnsupportedFormatVersion",
      "format_version",
      new RegExp(`format_version is ${version}, expected 1 to 2; .*may be convertible`),
    );
    // The version is judged before the length: a later version may well have a smaller fixed part.
    expectError(() => parseSnapshotHeader(prefix.subarray(0, 8), 8, HOST), "UnsupportedFormatVersion");
    expectError(() => snapshotPrefixLength(prefix.subarray(0, 8)), "UnsupportedFormatVersion");
  }
});

Deno.test("a version-1 file relabelled version 2 is refused, not misread", () => {
  // Its padding reads as an empty section table: refused before any hashing.
  const { prefix, fileLength } = fixture();
  new DataView(prefix.buffer).setUint32(4, 2, true);
  expectError(
    () => parseSnapshotHeader(prefix, fileLength, HOST),
    "InvalidField",
    "sections.count",
    "a file without sections is written as version 1",
  );
});

Deno.test("ArchMismatch, AbiMismatch and HypervisorMismatch", () => {
  const { prefix, fileLength } = fixture();
  expectError(
    () => parseSnapshotHeader(prefix, fileLength, { ...HOST, arch: Arch.AARCH64 }),
    "ArchMismatch",
    "arch",
    "header field arch is 1 (x86_64), expected 2 (aarch64), this host's architecture",
  );
  expectError(
    () => parseSnapshotHeader(prefix, fileLength, { ...HOST, abiVersion: 2 }),
    "AbiMismatch",
    "abi_version",
    "regenerate the snapshot from the guest binary",
  );
  expectError(
    () => parseSnapshotHeader(prefix, fileLength, { ...HOST, hypervisor: Hypervisor.MSHV }),
    "HypervisorMismatch",
    "hypervisor",
    "header field hypervisor is 1 (KVM), expected 2 (MSHV)",
  );
  // A file written for another host, read here.
  expectError(
    () => parseSnapshotHeader(setField(prefix.slice(), "abi_version", 7), fileLength, HOST),
    "AbiMismatch",
    "abi_version",
    "abi_version is 7, expected 1",
  );
});

Deno.test("Truncated: short file, short preamble, short fixed part, entry past the section end", () => {
  const { prefix, fileLength } = fixture();
  expectError(
    () => parseSnapshotHeader(prefix, fileLength - 1, HOST),
    "Truncated",
    "file length",
    `file length is ${fileLength - 1} bytes, expected at least ${fileLength} bytes`,
  );
  // Without the trailing guard page.
  expectError(() => parseSnapshotHeader(prefix, fileLength - 4096, HOST), "Truncated", "file length");
  expectError(() => parseSnapshotHeader(prefix.subarray(0, 3), 3, HOST), "Truncated", "magic");
  expectError(() => parseSnapshotHeader(prefix.subarray(0, 6), 6, HOST), "Truncated", "format_version");
  expectError(() => parseSnapshotHeader(prefix.subarray(0, 1175), 1175, HOST), "Truncated", "file length");
  expectError(() => snapshotPrefixLength(prefix.subarray(0, 1175)), "Truncated", "fixed header");

  // A host function whose name runs past the end of the section (with a correct header_hash).
  const withFunctions = fixture({ hostFunctions: [HOST_FUNCTIONS[0]] });
  const bytes = withFunctions.prefix.slice();
  new DataView(bytes.buffer).setUint32(1176 + 4, 200, true); // name_len 200 in a 24-byte section
  expectError(
    () => parseSnapshotHeader(rehash(bytes), withFunctions.fileLength, HOST),
    "Truncated",
    "host_functions[0].name",
  );
});

Deno.test("InvalidField: the spec's example message", () => {
  const { prefix } = fixture();
  expectError(
    () => parseSnapshotHeader(setField(prefix, "memory_offset", 4097), BIG_FILE, HOST),
    "InvalidField",
    "memory_offset",
    "Cannot load snapshot: header field memory_offset is 4097, expected a multiple of 4096",
  );
});

Deno.test("InvalidField: header tags", () => {
  const cases: [HeaderFieldName, bigint][] = [
    ["arch", 0n],
    ["arch", 4n],
    ["entrypoint_tag", 2n],
    ["has_sregs", 2n],
    ["hypervisor", 0n],
    ["hypervisor", 4n],
    ["init_data_permissions", 8n],
  ];
  for (const [name, value] of cases) {
    const { prefix, fileLength } = fixture();
    expectError(
      () => parseSnapshotHeader(setField(prefix, name, value), fileLength, HOST),
      "InvalidField",
      name,
    );
  }
});

Deno.test("InvalidField: sizes, offsets and snapvm's layout", () => {
  // [field to corrupt, value, part of the message, field the error names when it is another one]
  const cases: [HeaderFieldName, bigint | number, string?, string?][] = [
    ["memory_offset", 0, "expected at least 1176"],
    ["memory_offset", 2 * 1024 * 1024, "expected at most 1052672"],
    ["memory_size", 0],
    ["memory_size", 0x216001, "a non-zero multiple of 4096"],
    ["memory_size", (1n << 64n) - 4096n, "at most 989855744"],
    ["snapshot_size", MEMORY_SIZE - 4096, "equal to memory_size"],
    ["init_data_size", 4096, "snapvm has no init-data region"],
    ["init_data_permissions", 1, "snapvm has no init-data region"],
    ["code_size", 0],
    // The blob must end exactly at the end of the heap.
    [
      "code_size",
      0x5432 + 0x1000,
      "memory_size is 2187264, expected 2191360 (image end 0x206432",
      "memory_size",
    ],
    ["heap_size", 0x10001, "a multiple of 4096"],
    ["memory_size", MEMORY_SIZE + 4096, "image end"], // (snapshot_size is set to match below)
    ["pt_size", 0x3000],
    ["pt_size", 0x5001],
    ["pt_size", 0x1e0000 - 0x5000 + 0x1000],
    ["scratch_size", 0],
    ["scratch_size", 0xa001],
    ["scratch_size", 1024 * 1024 * 1024, "expected between 4096 and 989855744"],
    ["scratch_size", 944 * 1024 * 1024 - 4096, "guest memory"],
    ["input_data_size", 71],
    ["input_data_size", 256 * 1024 * 1024 + 1],
    ["output_data_size", 11],
    ["stack_top_gva", 0x21f008, "a multiple of 16"],
    ["stack_top_gva", 0x217000, "above the scratch base 0x217000"],
    ["stack_top_gva", 0x21f010, "at most 0x21f000"],
    ["stack_top_gva", (1n << 64n) - 16n],
    ["entrypoint_addr", 0x1ff000, "inside the guest image [0x200000, 0x205432)"],
    ["entrypoint_addr", 0x205432],
    ["entrypoint_addr", 0],
  ];
  for (const [name, value, message, field] of cases) {
    const { prefix } = fixture();
    setField(prefix, name, value);
    if (name === "memory_size" && value === MEMORY_SIZE + 4096) setField(prefix, "snapshot_size", value);
    expectError(() => parseSnapshotHeader(prefix, BIG_FILE, HOST), "InvalidField", field ?? name, message);
  }
});

Deno.test("InvalidField: entrypoint_tag Call if and only if has_sregs", () => {
  const initialise = fixture();
  expectError(
    () => parseSnapshotHeader(setField(initialise.prefix, "has_sregs", 1), initialise.fileLength, HOST),
    "InvalidField",
    "has_sregs",
    "has_sregs is 1, expected 0 because entrypoint_tag is 0 (Initialise)",
  );
  const call = fixture({ call: true });
  expectError(
    () => parseSnapshotHeader(setField(call.prefix, "has_sregs", 0), call.fileLength, HOST),
    "InvalidField",
    "has_sregs",
  );
});

Deno.test("InvalidField: special registers out of range, or present when has_sregs is 0", () => {
  const sregsWord = (register: number, fieldIndex: number) => 160 + 8 * (13 * register + fieldIndex);
  const cases: [number, bigint, string][] = [
    [sregsWord(0, 1), 1n << 32n, "sregs.cs.limit"],
    [sregsWord(1, 2), 0x10000n, "sregs.ds.selector"],
    [sregsWord(2, 3), 16n, "sregs.es.type"],
    [sregsWord(3, 4), 2n, "sregs.fs.present"],
    [sregsWord(4, 5), 4n, "sregs.gs.dpl"],
    [sregsWord(5, 11), 2n, "sregs.ss.unusable"],
    [sregsWord(6, 12), 1n, "sregs.tr.padding"],
    [sregsWord(7, 6), 1n << 63n, "sregs.ldt.db"],
    [160 + 8 * 104 + 8, 0x10000n, "sregs.gdt.limit"],
    [160 + 8 * 104 + 24, 0x10000n, "sregs.idt.limit"],
    [160 + 8 * 108 + 32, 16n, "sregs.cr8"],
  ];
  for (const [offset, value, field] of cases) {
    const { prefix, fileLength } = fixture({ call: true });
    new DataView(prefix.buffer).setBigUint64(offset, value, true);
    expectError(() => parseSnapshotHeader(rehash(prefix), fileLength, HOST), "InvalidField", field);
  }
  const { prefix, fileLength } = fixture();
  prefix[500] = 1;
  expectError(
    () => parseSnapshotHeader(rehash(prefix), fileLength, HOST),
    "InvalidField",
    "sregs",
    "a non-zero byte at file offset 500, expected all zeros when has_sregs is 0",
  );
});

Deno.test("InvalidField: a malformed host-functions section (with a correct header_hash)", () => {
  const section = (bytes: number[]) => {
    const { prefix, fileLength } = fixture();
    prefix.set(bytes, 1176);
    setField(prefix, "host_funcs_size", bytes.length);
    return () => parseSnapshotHeader(rehash(prefix), fileLength, HOST);
  };
  const u32 = (value: number) => [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >>> 24];
  const fn = (
    name: number[],
    ret: number,
    params: number[],
  ) => [...u32(name.length), ...name, ret, ...u32(params.length), ...params];
  const a = [0x61];
  expectError(section([...u32(0)]), "InvalidField", "host_functions.count");
  expectError(section([...u32(4097)]), "InvalidField", "host_functions.count");
  expectError(section([...u32(1), ...u32(0)]), "InvalidField", "host_functions[0].name_len");
  expectError(section([...u32(1), ...u32(257)]), "InvalidField", "host_functions[0].name_len");
  expectError(
    section([...u32(1), ...fn([0xc3, 0x28], 0, [])]),
    "InvalidField",
    "host_functions[0].name",
    "well-formed UTF-8",
  );
  expectError(section([...u32(1), ...fn(a, 10, [])]), "InvalidField", "host_functions[0].return_tag");
  expectError(section([...u32(1), ...fn(a, 0, [0])]), "InvalidField", "host_functions[0].params[0]");
  expectError(section([...u32(1), ...fn(a, 0, [1, 10])]), "InvalidField", "host_functions[0].params[1]");
  expectError(
    section([...u32(1), ...u32(1), ...a, 0, ...u32(65)]),
    "InvalidField",
    "host_functions[0].param_count",
  );
  expectError(
    section([...u32(2), ...fn(a, 0, []), ...fn(a, 1, [])]),
    "InvalidField",
    "host_functions[1].name",
    "a name not used",
  );
  expectError(
    section([...u32(1), ...fn(a, 0, []), 0]),
    "InvalidField",
    "host_functions",
    "1 bytes after the last function",
  );
  // The well-formed version of the same bytes loads.
  assert.equal(section([...u32(1), ...fn([0xc3, 0xa9], 2, [8])])()?.hostFunctions[0].name, "é");
});

Deno.test("HeaderHashMismatch: replacing blob_hash, sregs or host functions without rehashing", () => {
  const { prefix, fileLength } = fixture({ call: true, hostFunctions: HOST_FUNCTIONS });
  // blob_hash, a segment base in the sregs, host-function name, header_hash itself.
  for (const offset of [1144, 1175, 162, 1176 + 10, 1112]) {
    const bytes = prefix.slice();
    bytes[offset] ^= 0x40;
    expectError(
      () => parseSnapshotHeader(bytes, fileLength, HOST),
      "HeaderHashMismatch",
      "header_hash",
      "corrupt",
    );
  }
});

Deno.test("BlobHashMismatch", () => {
  const { prefix, blob, fileLength } = fixture();
  const parsed = parseSnapshotHeader(prefix, fileLength, HOST);
  blob[0x200000] ^= 1;
  expectError(
    () => verifyBlobHash(blob, parsed.blobHash),
    "BlobHashMismatch",
    "blob_hash",
    "memory blob is corrupt",
  );
});

Deno.test("HostFunctionsTooLarge: on load and on save", () => {
  const { prefix } = fixture();
  setField(prefix, "host_funcs_size", MAX_HOST_FUNCS_SIZE + 1);
  expectError(() => parseSnapshotHeader(prefix, BIG_FILE, HOST), "HostFunctionsTooLarge", "host_funcs_size");
  expectError(() => snapshotPrefixLength(prefix), "HostFunctionsTooLarge", "host_funcs_size");
  const huge: HostFunction[] = Array.from({ length: 4096 }, (_, i) => ({
    name: `${i}`.padEnd(256, "_"),
    returnType: ValueTag.Void,
    parameterTypes: [],
  }));
  expectError(
    () => fixture({ hostFunctions: huge }),
    "HostFunctionsTooLarge",
    "host_funcs_size",
    /^Cannot save snapshot/,
  );
});

Deno.test("every SnapshotFormatError kind is covered above", () => {
  // Keep this list in step with the tests; a new kind must come with a test that produces it.
  const tested: SnapshotFormatErrorKind[] = [
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
    // Tested in sections_test.ts (ChainTooLong) and tests/vm/snapshot/delta_test.ts (the base kinds).
    "ChainTooLong",
    "BaseNotFound",
    "BaseMismatch",
  ];
  assert.deepEqual([...SNAPSHOT_FORMAT_ERROR_KINDS].sort(), [...tested].sort());
});

// ---- Check order (loading rule 1) ---------------------------------------------------------------------------

Deno.test("checks run in the spec's order", () => {
  const run = (edit: (bytes: Uint8Array) => void, host = HOST) => {
    const { prefix, fileLength } = fixture({ call: true, hostFunctions: [HOST_FUNCTIONS[0]] });
    edit(prefix);
    return () => parseSnapshotHeader(prefix, fileLength, host);
  };
  // Preamble before everything.
  expectError(run((b) => (b[0] = 0), { ...HOST, abiVersion: 9 }), "BadMagic");
  // Header tags before host compatibility.
  expectError(
    run((b) => setField(b, "hypervisor", 9), { ...HOST, abiVersion: 9 }),
    "InvalidField",
    "hypervisor",
  );
  // Host compatibility (arch, then ABI, then hypervisor) before sizes.
  expectError(
    run((b) => setField(b, "memory_offset", 1), { arch: 2, abiVersion: 9, hypervisor: 2 }),
    "ArchMismatch",
  );
  expectError(
    run((b) => setField(b, "memory_offset", 1), { ...HOST, abiVersion: 9, hypervisor: 2 }),
    "AbiMismatch",
  );
  expectError(run((b) => setField(b, "memory_offset", 1), { ...HOST, hypervisor: 2 }), "HypervisorMismatch");
  // Sizes before the entry-point/sregs consistency.
  expectError(run((b) => setField(setField(b, "has_sregs", 0), "pt_size", 1)), "InvalidField", "pt_size");
  // Entry-point/sregs consistency before sregs ranges.
  expectError(run((b) => setField(b, "entrypoint_tag", 0)), "InvalidField", "has_sregs");
  // Sregs ranges before header_hash (the edit leaves the hash stale).
  expectError(run((b) => (b[168 + 4] = 1)), "InvalidField", "sregs.cs.limit");
  // header_hash before the host-functions section.
  expectError(run((b) => (b[1176 + 4 + 9] = 0)), "HeaderHashMismatch");
});

Deno.test("u64 arithmetic cannot overflow into a valid-looking layout", () => {
  const max = (1n << 64n) - 1n;
  const pageMax = max - 4095n;
  const cases: [HeaderFieldName, bigint][] = [
    ["memory_offset", pageMax],
    ["memory_size", pageMax],
    ["host_funcs_size", max],
    ["heap_size", pageMax],
    ["code_size", max],
    ["scratch_size", pageMax],
    ["input_data_size", max],
    ["entrypoint_addr", max],
  ];
  for (const [name, value] of cases) {
    const { prefix } = fixture();
    assert.throws(
      () => parseSnapshotHeader(setField(prefix, name, value), BIG_FILE, HOST),
      SnapshotFormatError,
      name,
    );
  }
  // Offset + size that would wrap to a small value with u64 arithmetic.
  const { prefix } = fixture();
  setField(prefix, "memory_size", 1n << 63n);
  expectError(() => parseSnapshotHeader(prefix, 8192, HOST), "InvalidField", "memory_size");
});

// ---- Writer-side checks and caller errors -------------------------------------------------------------------

Deno.test("encodeSnapshotPrefix refuses what the loader would refuse", () => {
  expectError(
    () => fixture({ header: { entrypointAddr: 0x100 } }),
    "InvalidField",
    "entrypoint_addr",
    /^Cannot save snapshot: header field entrypoint_addr is 0x100/,
  );
  expectError(() => fixture({ header: { entrypointTag: EntrypointTag.Call } }), "InvalidField", "has_sregs");
  expectError(() => fixture({ header: { arch: 7 as Arch } }), "InvalidField", "arch");
  const badSregs = abiSregs();
  badSregs.cs.dpl = 4;
  expectError(
    () =>
      encodeSnapshotPrefix({
        header: fields({ entrypointTag: EntrypointTag.Call }),
        sregs: badSregs,
        hostFunctions: [],
        blobHash: new Uint8Array(32),
      }),
    "InvalidField",
    "sregs.cs.dpl",
    "Cannot save snapshot: special register cs.dpl is 4, expected at most 3",
  );
  assert.throws(
    () =>
      encodeSnapshotPrefix({
        header: fields(),
        sregs: null,
        hostFunctions: [],
        blobHash: new Uint8Array(31),
      }),
    RangeError,
  );
  assert.throws(() => fixture({ header: { heapSize: -4096 } }), RangeError);
  assert.throws(() => fixture({ header: { codeSize: 0.5 } }), RangeError);
});

Deno.test("caller errors are RangeErrors, not format errors", () => {
  const { prefix, fileLength } = fixture({ hostFunctions: HOST_FUNCTIONS });
  // Fewer bytes than the host functions need while the file has them.
  assert.throws(() => parseSnapshotHeader(prefix.subarray(0, 1176), fileLength, HOST), RangeError);
  assert.throws(() => parseSnapshotHeader(prefix.subarray(0, 1000), fileLength, HOST), RangeError);
  // More bytes than the file is long.
  assert.throws(() => parseSnapshotHeader(prefix, 100, HOST), RangeError);
  assert.throws(() => parseSnapshotHeader(prefix, -1, HOST), RangeError);
  assert.throws(() => parseSnapshotHeader(prefix, 1.5, HOST), RangeError);
});
