// Version-2 sections (format/sections.ts and the section checks of parseSnapshotHeader): round trips, and
// hostile section tables — forged and rehashed so that only the check under test can refuse them.
import assert from "node:assert/strict";
import { MEMORY_MAP } from "../../vm/machine/abi.ts";
import {
  blake3,
  decodeSections,
  encodeSections,
  encodeSnapshotPrefix,
  inspectSnapshot,
  MAX_DELTA_CHAIN,
  MAX_DELTA_RUNS,
  MAX_WORKING_SET_RUNS,
  type PageRun,
  parseSnapshotHeader,
  type SectionsInput,
  SnapshotFormatError,
  type SnapshotFormatErrorKind,
  snapshotPrefixLength,
} from "../../format/mod.ts";
import { expectError as refused, fields, HOST, MEMORY_SIZE } from "./_header_fixture.ts";

const PAGES = MEMORY_SIZE / 4096;
const BLOB_HASH = blake3(new Uint8Array([1, 2, 3]));
const BASE_HASH = blake3(new Uint8Array([4, 5, 6]));

function prefixWith(sections: SectionsInput): Uint8Array {
  return encodeSnapshotPrefix({
    header: fields(),
    sregs: null,
    hostFunctions: [],
    blobHash: BLOB_HASH,
    memoryMap: MEMORY_MAP,
    ...sections,
  });
}

/** File length for a prefix whose file stores `storedPages` pages (all of the blob when undefined). */
function lengthOf(prefix: Uint8Array, storedPages = PAGES): number {
  return prefix.length + storedPages * 4096 + 4096;
}

const u32 = (bytes: Uint8Array, at: number) =>
  new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
const setU32 = (bytes: Uint8Array, at: number, value: number) =>
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, value, true);

/**
 * A forged file: the v2 prefix of `fields()` with `table` (any bytes) as its section table, memory_offset on
 * the next page boundary, and header_hash recomputed from the spec's definition (independently of the codec).
 */
function forge(table: Uint8Array, edit?: (prefix: Uint8Array) => void): Uint8Array {
  const memoryOffset = Math.ceil((1176 + table.length) / 4096) * 4096;
  const prefix = new Uint8Array(memoryOffset);
  prefix.set(prefixWith({}).subarray(0, 1176));
  setU32(prefix, 4, 2);
  new DataView(prefix.buffer).setBigUint64(8 + 8 * 15, BigInt(memoryOffset), true);
  prefix.set(table, 1176);
  edit?.(prefix);
  // Hash what the file claims to be its table (its sections_size), as far as the prefix goes.
  return rehash(prefix, Math.min(1176 + 8 + u32(table, 4), prefix.length));
}

function rehash(prefix: Uint8Array, end: number): Uint8Array {
  const message = new Uint8Array(end - 32);
  message.set(prefix.subarray(0, 1112), 0);
  message.set(prefix.subarray(1144, end), 1112);
  prefix.set(blake3(message), 1112);
  return prefix;
}

/** A section table from raw sections. */
function table(...sections: [number, Uint8Array][]): Uint8Array {
  const size = sections.reduce((n, [, p]) => n + 8 + p.length, 0);
  const bytes = new Uint8Array(8 + size);
  setU32(bytes, 0, sections.length);
  setU32(bytes, 4, size);
  let at = 8;
  for (const [type, payload] of sections) {
    setU32(bytes, at, type);
    setU32(bytes, at + 4, payload.length);
    bytes.set(payload, at + 8);
    at += 8 + payload.length;
  }
  return bytes;
}

function runsPayload(runs: [number, number][], count = runs.length): Uint8Array {
  const bytes = new Uint8Array(4 + 8 * runs.length);
  setU32(bytes, 0, count);
  runs.forEach(([first, n], i) => {
    setU32(bytes, 4 + 8 * i, first);
    setU32(bytes, 8 + 8 * i, n);
  });
  return bytes;
}

function basePayload(
  opts: { depth?: number; name?: Uint8Array | string; runs?: [number, number][]; runCount?: number } = {},
): Uint8Array {
  const name = typeof opts.name === "string" || opts.name === undefined
    ? new TextEncoder().encode(opts.name ?? "base.hls")
    : opts.name;
  const runs = runsPayload(opts.runs ?? [[600, 2]], opts.runCount);
  const bytes = new Uint8Array(32 + 4 + 4 + name.length + runs.length);
  bytes.set(BASE_HASH);
  setU32(bytes, 32, opts.depth ?? 1);
  setU32(bytes, 36, name.length);
  bytes.set(name, 40);
  bytes.set(runs, 40 + name.length);
  return bytes;
}

function binaryPayload(path: Uint8Array | string, entry = 0x200123n): Uint8Array {
  const bytes = typeof path === "string" ? new TextEncoder().encode(path) : path;
  const out = new Uint8Array(12 + bytes.length);
  new DataView(out.buffer).setBigUint64(0, entry, true);
  setU32(out, 8, bytes.length);
  out.set(bytes, 12);
  return out;
}

/** {@linkcode refused}, and the message names the value found and the one expected. */
function expectError(
  run: () => unknown,
  kind: SnapshotFormatErrorKind,
  field?: string,
  messagePart?: string | RegExp,
): SnapshotFormatError {
  const caught = refused(run, kind, field, messagePart);
  assert.ok(caught.message.includes(`is ${caught.found}`) && caught.message.includes(caught.expected));
  return caught;
}

const load = (prefix: Uint8Array, length: number | bigint = lengthOf(prefix)) =>
  parseSnapshotHeader(prefix, length, HOST);

// ---- Round trips ---------------------------------------------------------------------------------------------

Deno.test("no section: the writer keeps writing version 1", () => {
  const prefix = prefixWith({ workingSet: [] });
  assert.equal(u32(prefix, 4), 1);
  const parsed = load(prefix);
  assert.equal(parsed.formatVersion, 1);
  assert.deepEqual([parsed.binary, parsed.base, parsed.workingSet], [null, null, null]);
  assert.equal(parsed.storedSize, MEMORY_SIZE);
});

Deno.test("BINARY, BASE and WORKING_SET round-trip in a version-2 file", () => {
  const binary = { path: "/srv/guests/Größe 🦀/echo", entry: 0xffff_ffff_ffff_fff0n };
  const base = {
    blobHash: BASE_HASH,
    chainDepth: 3,
    fileName: "base layer.hls",
    runs: [{ first: 0, count: 1 }, { first: 5, count: 3 }, { first: PAGES - 2, count: 2 }],
  };
  const workingSet: PageRun[] = [{ first: 1, count: 30 }, { first: 512, count: 9 }];
  const prefix = prefixWith({ binary, base, workingSet });
  assert.equal(u32(prefix, 4), 2);
  assert.equal(prefix.length % 4096, 0);
  assert.equal(snapshotPrefixLength(prefix.subarray(0, 1176)), prefix.length);
  const parsed = load(prefix, lengthOf(prefix, 6));
  assert.equal(parsed.formatVersion, 2);
  assert.deepEqual(parsed.binary, binary);
  assert.deepEqual(parsed.base, base);
  assert.deepEqual(parsed.workingSet, workingSet);
  assert.deepEqual(parsed.skippedSections, []);
  assert.equal(parsed.storedSize, 6 * 4096);
  assert.equal(parsed.header.memorySize, MEMORY_SIZE); // the header describes the resulting snapshot

  const info = inspectSnapshot(prefix, lengthOf(prefix, 6), HOST);
  assert.equal(info.formatVersion, 2);
  assert.deepEqual(info.binary, { path: binary.path, entry: "0xfffffffffffffff0" });
  assert.deepEqual(info.base, {
    blobHash: [...BASE_HASH].map((b) => b.toString(16).padStart(2, "0")).join(""),
    chainDepth: 3,
    fileName: "base layer.hls",
    runs: 3,
    pages: 6,
  });
  assert.deepEqual(info.workingSet, { runs: 2, pages: 39 });
  assert.equal(info.storedSize, 6 * 4096);
  JSON.stringify(info);
});

Deno.test("an empty delta (no run) stores nothing but the guard", () => {
  const prefix = prefixWith({ base: { blobHash: BASE_HASH, chainDepth: 1, fileName: "b", runs: [] } });
  assert.equal(load(prefix, prefix.length + 4096).storedSize, 0);
  expectError(() => load(prefix, prefix.length + 4095), "Truncated", "file length");
});

Deno.test("a delta shorter than its stored pages is Truncated; a complete v2 file needs its whole blob", () => {
  const delta = prefixWith({
    base: { blobHash: BASE_HASH, chainDepth: 1, fileName: "b", runs: [{ first: 3, count: 4 }] },
  });
  load(delta, lengthOf(delta, 4));
  expectError(
    () => load(delta, lengthOf(delta, 4) - 1),
    "Truncated",
    "file length",
    "the delta's stored pages 16384",
  );
  const full = prefixWith({ binary: { path: "/g", entry: 1n } });
  expectError(
    () => load(full, lengthOf(full) - 4096),
    "Truncated",
    "file length",
    `memory_size ${MEMORY_SIZE}`,
  );
});

Deno.test("large sections move memory_offset; snapshotPrefixLength names the whole prefix", () => {
  const workingSet = Array.from({ length: 5000 }, (_, i) => ({ first: 2 * i, count: 1 }))
    .filter((r) => r.first < PAGES);
  const prefix = prefixWith({ workingSet, binary: { path: "/" + "p".repeat(4000), entry: 0n } });
  assert.equal(prefix.length, 8192);
  assert.equal(snapshotPrefixLength(prefix.subarray(0, 1176)), prefix.length);
  assert.equal(load(prefix).workingSet!.length, workingSet.length);
  // Given only part of the prefix while the file has it all: a caller error.
  assert.throws(() => load(prefix.subarray(0, 4096), lengthOf(prefix)), RangeError);
});

Deno.test("unknown optional sections are skipped (and still hashed); unknown required ones are refused", () => {
  const skipped = forge(table([1, binaryPayload("/g")], [0x8000_0042, new Uint8Array([9, 9, 9])]));
  const parsed = load(skipped);
  assert.equal(parsed.binary?.path, "/g");
  assert.deepEqual(parsed.skippedSections, [{ type: 0x8000_0042, length: 3 }]);
  const tampered = skipped.slice();
  tampered[1176 + 8 + 8 + 14 + 8] ^= 1; // a byte of the optional payload
  expectError(() => load(tampered), "HeaderHashMismatch", "header_hash", "sections");

  expectError(
    () => load(forge(table([1, binaryPayload("/g")], [4, new Uint8Array(0)]))),
    "UnsupportedFormatVersion",
    "sections[1].type",
    "needs a snapvm release that knows this section",
  );
});

// ---- Hostile section tables -------------------------------------------------------------------------------

Deno.test("the section table's count, size and extent are checked before it is hashed or read", () => {
  const good = table([1, binaryPayload("/g")]);
  for (const count of [0, 17, 0xffff_ffff]) {
    const t = good.slice();
    setU32(t, 0, count);
    expectError(() => load(forge(t)), "InvalidField", "sections.count");
  }
  // sections_size above the limit, past memory_offset, or not the bytes the sections take.
  for (const [size, field] of [[0x10_0001, "sections_size"], [0xffff_ffff, "sections_size"]] as const) {
    const t = good.slice();
    setU32(t, 4, size);
    expectError(() => load(forge(t)), "InvalidField", field);
  }
  {
    const t = good.slice();
    setU32(t, 4, 4096); // runs past memory_offset
    expectError(() => load(forge(t)), "InvalidField", "sections_size", "ends before memory_offset");
  }
  {
    const t = good.slice();
    setU32(t, 4, u32(t, 4) + 1); // one byte of padding claimed: memory_offset is then still right
    expectError(() => load(forge(t)), "InvalidField", "sections_size", "the end of the last section");
  }
  {
    const t = good.slice();
    setU32(t, 4, u32(t, 4) - 1); // the table's last byte becomes (non-zero) padding
    expectError(() => load(forge(t)), "InvalidField", "padding");
  }
  {
    const t = good.slice();
    setU32(t, 12, u32(t, 12) + 1); // the section's length runs past the table
    expectError(() => load(forge(t)), "Truncated", "sections[0] payload");
  }
});

Deno.test("memory_offset must be the first page after the table, with zero padding", () => {
  const t = table([1, binaryPayload("/g")]);
  const slack = forge(t, (p) => new DataView(p.buffer).setBigUint64(8 + 8 * 15, 8192n, true));
  expectError(
    () => load(new Uint8Array([...slack, ...new Uint8Array(4096)])),
    "InvalidField",
    "memory_offset",
  );
  const dirty = forge(t);
  dirty[4000] = 1;
  expectError(() => load(dirty), "InvalidField", "padding", "file offset 4000");
  // The version-2 prefix is memory_offset bytes long; snapshotPrefixLength checks its bounds.
  const huge = forge(t, (p) => new DataView(p.buffer).setBigUint64(8 + 8 * 15, 1n << 40n, true));
  expectError(() => snapshotPrefixLength(huge), "InvalidField", "memory_offset");
  const unaligned = forge(t, (p) => new DataView(p.buffer).setBigUint64(8 + 8 * 15, 4097n, true));
  expectError(() => snapshotPrefixLength(unaligned), "InvalidField", "memory_offset");
});

Deno.test("types ascend, each at most once; lengths are exact", () => {
  expectError(
    () => load(forge(table([3, runsPayload([[1, 1]])], [1, binaryPayload("/g")]))),
    "InvalidField",
    "sections[1].type",
    "ascending",
  );
  expectError(
    () => load(forge(table([1, binaryPayload("/g")], [1, binaryPayload("/h")]))),
    "InvalidField",
    "sections[1].type",
  );
  const long = new Uint8Array([...binaryPayload("/g"), 0]);
  expectError(() => load(forge(table([1, long]))), "InvalidField", "sections[0].length");
  const short = binaryPayload("/g").subarray(0, 11);
  expectError(() => load(forge(table([1, short]))), "Truncated", "binary.path_len");
});

Deno.test("BINARY: path length, UTF-8 and NUL", () => {
  expectError(() => load(forge(table([1, binaryPayload("")]))), "InvalidField", "binary.path_len");
  const tooLong = binaryPayload("/" + "a".repeat(4096));
  expectError(() => load(forge(table([1, tooLong]))), "InvalidField", "binary.path_len");
  const lying = binaryPayload("/g");
  setU32(lying, 8, 0xffff_fff0);
  expectError(() => load(forge(table([1, lying]))), "InvalidField", "binary.path_len");
  expectError(
    () => load(forge(table([1, binaryPayload(new Uint8Array([0x2f, 0xff, 0xfe]))]))),
    "InvalidField",
    "binary.path",
    "well-formed UTF-8",
  );
  expectError(() => load(forge(table([1, binaryPayload("/a\0b")]))), "InvalidField", "binary.path", "NUL");
});

Deno.test("BASE: chain depth, file name, hostile run counts and runs", () => {
  expectError(() => load(forge(table([2, basePayload({ depth: 0 })]))), "InvalidField", "base.chain_depth");
  expectError(
    () => load(forge(table([2, basePayload({ depth: MAX_DELTA_CHAIN + 1 })]))),
    "ChainTooLong",
    "base.chain_depth",
  );
  expectError(
    () => load(forge(table([2, basePayload({ depth: 0xffff_ffff })]))),
    "ChainTooLong",
    "base.chain_depth",
  );
  for (const name of ["", "..", ".", "dir/base.hls", "a\\b", "a\0b", "x".repeat(256)]) {
    expectError(
      () => load(forge(table([2, basePayload({ name })]))),
      "InvalidField",
      name === "" || name.length > 255 ? "base.file_name_len" : "base.file_name",
    );
  }
  expectError(
    () => load(forge(table([2, basePayload({ name: new Uint8Array([0xc3]) })]))),
    "InvalidField",
    "base.file_name",
  );
  // A huge run count is refused before anything is allocated or read.
  expectError(
    () => load(forge(table([2, basePayload({ runCount: 0xffff_ffff })]))),
    "InvalidField",
    "base.run_count",
    `0..${MAX_DELTA_RUNS}`,
  );
  // A count larger than the runs present: the runs run out.
  expectError(
    () => load(forge(table([2, basePayload({ runCount: 2 })]))),
    "Truncated",
    "base.runs[1].first_page",
  );
  const bad: [string, [number, number][], string][] = [
    ["overlapping", [[10, 5], [12, 1]], "base.runs[1].first_page"],
    ["adjacent", [[10, 5], [15, 1]], "base.runs[1].first_page"],
    ["descending", [[10, 1], [5, 1]], "base.runs[1].first_page"],
    ["empty", [[10, 0]], "base.runs[0].page_count"],
    ["past the blob", [[PAGES - 1, 2]], "base.runs[0].page_count"],
    ["u32 wrap", [[0xffff_ffff, 0xffff_ffff]], "base.runs[0].page_count"],
    ["u32 wrap after a run", [[1, 1], [0xffff_fff0, 0x20]], "base.runs[1].page_count"],
  ];
  for (const [what, runs, field] of bad) {
    const error = expectError(() => load(forge(table([2, basePayload({ runs })]))), "InvalidField", field);
    assert.ok(
      error.message.startsWith("Cannot load snapshot: section field base.runs"),
      `${what}: ${error.message}`,
    );
  }
});

Deno.test("WORKING_SET: at least one run, bounded, inside the blob", () => {
  expectError(() => load(forge(table([3, runsPayload([])]))), "InvalidField", "working_set.run_count");
  expectError(
    () => load(forge(table([3, runsPayload([[1, 1]], MAX_WORKING_SET_RUNS + 1)]))),
    "InvalidField",
    "working_set.run_count",
  );
  expectError(
    () => load(forge(table([3, runsPayload([[PAGES, 1]])]))),
    "InvalidField",
    "working_set.runs[0].page_count",
  );
  assert.deepEqual(load(forge(table([3, runsPayload([[0, PAGES]])]))).workingSet, [{
    first: 0,
    count: PAGES,
  }]);
});

Deno.test("random corruption of a section table is a SnapshotFormatError, never a crash", () => {
  const good = prefixWith({
    binary: { path: "/srv/guest", entry: 0x201000n },
    base: {
      blobHash: BASE_HASH,
      chainDepth: 2,
      fileName: "b.hls",
      runs: [{ first: 1, count: 1 }, { first: 9, count: 7 }],
    },
    workingSet: [{ first: 1, count: 30 }, { first: 512, count: 9 }],
  });
  const tableEnd = 1176 + 8 + u32(good, 1176 + 4);
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0);
  let loaded = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = good.slice();
    for (let k = 0, n = 1 + (next() % 4); k < n; k++) {
      const at = 1176 + (next() % (tableEnd - 1176));
      bytes[at] = next() % 3 === 0 ? 0xff : next() & 0xff;
    }
    rehash(bytes, Math.min(tableEnd, bytes.length)); // so the section checks, not the hash, decide
    try {
      load(bytes, 1n << 40n);
      loaded++;
    } catch (error) {
      if (!(error instanceof SnapshotFormatError)) throw error;
    }
  }
  assert.ok(loaded < 3000);
});

// ---- Writer-side refusals -------------------------------------------------------------------------------------

Deno.test("encodeSections refuses what a loader would refuse", () => {
  const save = (input: SectionsInput) => () => encodeSections(input, MEMORY_SIZE);
  expectError(save({ binary: { path: "", entry: 0n } }), "InvalidField", "binary.path");
  expectError(save({ binary: { path: "a\0", entry: 0n } }), "InvalidField", "binary.path");
  expectError(save({ binary: { path: "/g", entry: -1n } }), "InvalidField", "binary.entry");
  expectError(save({ binary: { path: "/g", entry: 1n << 64n } }), "InvalidField", "binary.entry");
  const base = { blobHash: BASE_HASH, chainDepth: 1, fileName: "b", runs: [] as PageRun[] };
  expectError(save({ base: { ...base, chainDepth: 9 } }), "ChainTooLong", "base.chain_depth", /^Cannot save/);
  expectError(save({ base: { ...base, fileName: "../b" } }), "InvalidField", "base.file_name");
  expectError(save({ base: { ...base, blobHash: new Uint8Array(31) } }), "InvalidField", "base.blob_hash");
  expectError(
    save({ base: { ...base, runs: [{ first: 1, count: 2 }, { first: 2, count: 1 }] } }),
    "InvalidField",
    "base.runs[1].first_page",
  );
  expectError(
    save({ workingSet: [{ first: PAGES, count: 1 }] }),
    "InvalidField",
    "working_set.runs[0].page_count",
  );
  assert.equal(encodeSections({}, MEMORY_SIZE).length, 0);
  assert.deepEqual(
    decodeSections(encodeSections({ workingSet: [{ first: 0, count: 1 }] }, MEMORY_SIZE), {
      memorySize: MEMORY_SIZE,
    }).workingSet,
    [{ first: 0, count: 1 }],
  );
});
