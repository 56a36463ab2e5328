/**
 * Fuzzer 1: snapshot files. Starts from real `.hls` files (Initialise and Call snapshots, with the built-in
 * host function only, with several, and with an empty host-functions section) and mutates them structurally
 * (every header field and special register to boundary values, hash bytes, the host-functions section,
 * truncation and extension at every section boundary) and randomly (bit flips, byte runs, splices). Each
 * mutated file is written with its exact length and given to `inspectFile`, `fromFileUnchecked` and
 * `fromFile`; a loaded snapshot is also started with `fromSnapshot`, called, restored and called again.
 *
 * Allowed: success, but only when the file's own `header_hash` (and for `fromFile` its `blob_hash`)
 * verifies over the mutated bytes and the file holds the blob and its trailing guard; otherwise a
 * `SnapshotFormatError` (or a sandbox error once running) with a message. Checked on top: no mapping of the
 * file reaches past its end, nothing of the file stays open or mapped after `close()`, fds and mappings of
 * the process do not grow, and a file whose hashed bytes are those of a seed behaves like the seed.
 *
 * The first cases of every run are the deterministic structural list; random cases follow.
 *
 * @module
 */
import { HostFunctions, MultiUseSandbox, setLogger, Snapshot, UninitializedSandbox } from "../../mod.ts";
import type { Value } from "../../mod.ts";
import {
  blake3,
  BLOB_HASH_OFFSET,
  encodeSnapshotPrefix,
  HEADER_FIELDS,
  HEADER_HASH_OFFSET,
  HOST_FUNCS_OFFSET,
  parseSnapshotHeader,
  SREGS_OFFSET,
  TRAILING_GUARD_SIZE,
} from "../../format/mod.ts";
import { headerHashTo } from "../../format/_check.ts";
import { HLS_FORMAT_VERSION_1, SECTION_TABLE_HEADER_SIZE } from "../../format/constants.ts";
import { hostIdentity } from "../../vm/snapshot.ts";
import { caseRng, type Rng } from "./_rng.ts";
import {
  interestingValues,
  mutateRandom,
  readUint,
  resized,
  splice,
  withField,
  writeUint,
} from "./_mutate.ts";
import {
  badSandboxError,
  badSnapshotError,
  describeError,
  fdCount,
  fdsOf,
  type FuzzOptions,
  type FuzzResult,
  guestBinary,
  isOneOf,
  loop,
  mappingPastEnd,
  mappingsOf,
  nativeMapCount,
  outcomeName,
  POISONING_ERRORS,
  Tally,
  workDirOf,
} from "./_harness.ts";

/** One starting file. */
export interface SnapshotSeed {
  /** Short name. */
  name: string;
  /** The file. */
  bytes: Uint8Array;
  /** What a sandbox from it must answer: `[function, args, expected result]`. */
  probes: [string, Value[], Value][];
  /** Fields of the file, for structural mutations. */
  hostFuncsSize: number;
  memoryOffset: number;
  memorySize: number;
  hasSregs: boolean;
}

/** A mutated file and how it was made. */
interface Case {
  bytes: Uint8Array;
  description: string;
  /** The seed it was made from, for the "same hashed bytes, same behaviour" check. */
  seed?: SnapshotSeed;
}

const HEADER = HEADER_FIELDS.map(([name], i) => ({ name, offset: 8 + 8 * i }));
const headerOffset = (name: string) => HEADER.find((f) => f.name === name)!.offset;

/** The host functions every sandbox in this fuzzer gets (a superset of every seed's). */
export function fuzzHostFunctions(): HostFunctions {
  return new HostFunctions()
    .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => (a + b) | 0)
    .register("Mix", {
      params: ["i32", "u32", "i64", "u64", "f32", "f64", "bool", "string", "bytes"],
      returns: "bytes",
    }, () => new Uint8Array(3))
    .register("Nothing", { params: [], returns: "void" }, () => undefined)
    .register("Ünïcödé-名前", { params: ["string"], returns: "string" }, (s: string) => s)
    .registerPrint(() => {});
}

function fieldsOf(bytes: Uint8Array): Omit<SnapshotSeed, "name" | "bytes" | "probes"> {
  return {
    hostFuncsSize: Number(readUint(bytes, headerOffset("host_funcs_size"), 8)),
    memoryOffset: Number(readUint(bytes, headerOffset("memory_offset"), 8)),
    memorySize: Number(readUint(bytes, headerOffset("memory_size"), 8)),
    hasSregs: readUint(bytes, headerOffset("has_sregs"), 8) === 1n,
  };
}

/** Builds the seed files (real snapshots written by `toFile`) in `dir`. */
export async function makeSnapshotSeeds(dir: string): Promise<SnapshotSeed[]> {
  const seeds: SnapshotSeed[] = [];
  const config = { heapSize: 64 * 1024, stackSize: 16 * 1024, inputDataSize: 8192, outputDataSize: 8192 };
  const add = (u: UninitializedSandbox) =>
    u.registerHostFunction(
      "Add",
      { params: ["i32", "i32"], returns: "i32" },
      (a: number, b: number) => a + b,
    );
  const save = async (name: string, snap: Snapshot, probes: SnapshotSeed["probes"]) => {
    const path = `${dir}/seed-${name}.hls`;
    await snap.toFile(path);
    snap.close();
    const bytes = Deno.readFileSync(path);
    seeds.push({ name, bytes, probes, ...fieldsOf(bytes) });
  };
  const testguest = guestBinary("testguest");
  const echo: SnapshotSeed["probes"][number] = ["EchoI32", [42], 42];

  await save("init-plain", new UninitializedSandbox(testguest, config).snapshot(), [echo, [
    "GetStatic",
    [],
    0,
  ]]);
  await save("init-add", add(new UninitializedSandbox(testguest, config)).snapshot(), [echo, [
    "Add",
    [2, 3],
    5,
  ]]);
  {
    using sbx = new UninitializedSandbox(testguest, config).evolve();
    sbx.call("AddToStatic", 5);
    await save("call-plain", sbx.snapshot(), [echo, ["GetStatic", [], 5]]);
  }
  {
    const u = new UninitializedSandbox(testguest, config, fuzzHostFunctions());
    using sbx = u.evolve();
    sbx.call("AddToStatic", 7);
    await save("call-many", sbx.snapshot(), [echo, ["GetStatic", [], 7], ["Add", [2, 3], 5]]);
  }
  {
    // The same Call snapshot re-encoded with an empty host-functions section (host_funcs_size 0).
    const plain = seeds.find((s) => s.name === "call-plain")!;
    const parsed = parseSnapshotHeader(plain.bytes, plain.bytes.length, hostIdentity());
    const { hasSregs: _h, hostFuncsSize: _s, memoryOffset: _o, ...header } = parsed.header;
    const prefix = encodeSnapshotPrefix({
      header,
      sregs: parsed.sregs,
      hostFunctions: [],
      blobHash: parsed.blobHash,
    });
    const blob = plain.bytes.subarray(plain.memoryOffset, plain.memoryOffset + plain.memorySize);
    const bytes = new Uint8Array(prefix.length + blob.length + TRAILING_GUARD_SIZE);
    bytes.set(prefix);
    bytes.set(blob, prefix.length);
    Deno.writeFileSync(`${dir}/seed-call-nohostfns.hls`, bytes);
    seeds.push({ name: "call-nohostfns", bytes, probes: [echo, ["GetStatic", [], 5]], ...fieldsOf(bytes) });
  }
  {
    using sbx = new UninitializedSandbox(guestBinary("hello"), { heapSize: 8192 }).evolve();
    await save("call-hello", sbx.snapshot(), [["Twice", [21n], 42n]]);
  }
  return seeds;
}

// ---- rehashing ---------------------------------------------------------------------------------------------

/**
 * Where `header_hash` coverage ends by the file's own fields: the host functions (format version 1), or the
 * section table after them (version 2); -1 when that is past the end of the file.
 */
function hashedEnd(bytes: Uint8Array): number {
  const hostFuncsEnd = BigInt(HOST_FUNCS_OFFSET) + readUint(bytes, headerOffset("host_funcs_size"), 8);
  if (hostFuncsEnd > BigInt(bytes.length)) return -1;
  const version = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4, true);
  if (version === HLS_FORMAT_VERSION_1) return Number(hostFuncsEnd);
  if (hostFuncsEnd + BigInt(SECTION_TABLE_HEADER_SIZE) > BigInt(bytes.length)) return -1;
  const at = Number(hostFuncsEnd);
  const end = at + SECTION_TABLE_HEADER_SIZE +
    new DataView(bytes.buffer, bytes.byteOffset + at + 4, 4).getUint32(0, true);
  return end <= bytes.length ? end : -1;
}

/** Recomputes `blob_hash` (if asked) and `header_hash` from the file's own fields, where they fit. */
function rehash(bytes: Uint8Array, blob: boolean): Uint8Array {
  if (bytes.length < HOST_FUNCS_OFFSET) return bytes;
  if (blob) {
    const off = readUint(bytes, headerOffset("memory_offset"), 8);
    const size = readUint(bytes, headerOffset("memory_size"), 8);
    if (off + size <= BigInt(bytes.length)) {
      bytes.set(blake3(bytes.subarray(Number(off), Number(off + size))), BLOB_HASH_OFFSET);
    }
  }
  const end = hashedEnd(bytes);
  if (end >= 0) bytes.set(headerHashTo(bytes, end), HEADER_HASH_OFFSET);
  return bytes;
}

// ---- the structural list -----------------------------------------------------------------------------------

type Rehash = "none" | "header" | "both";

function finish(bytes: Uint8Array, how: Rehash): Uint8Array {
  return how === "none" ? bytes : rehash(bytes, how === "both");
}

/** Segment register fields in file order and the largest value each may hold. */
const SEGMENT_FIELDS: [string, bigint][] = [
  ["base", (1n << 64n) - 1n],
  ["limit", 0xffffffffn],
  ["selector", 0xffffn],
  ["type", 15n],
  ["present", 1n],
  ["dpl", 3n],
  ["db", 1n],
  ["s", 1n],
  ["l", 1n],
  ["g", 1n],
  ["avl", 1n],
  ["unusable", 1n],
  ["padding", 0n],
];
const SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"];

/** Every special-register field: name, file offset, largest valid value. */
function sregFields(): { name: string; offset: number; max: bigint }[] {
  const out: { name: string; offset: number; max: bigint }[] = [];
  let off = SREGS_OFFSET;
  for (const seg of SEGMENTS) {
    for (const [f, max] of SEGMENT_FIELDS) {
      out.push({ name: `${seg}.${f}`, offset: off, max });
      off += 8;
    }
  }
  for (const t of ["gdt", "idt"]) {
    out.push({ name: `${t}.base`, offset: off, max: (1n << 64n) - 1n });
    out.push({ name: `${t}.limit`, offset: off + 8, max: 0xffffn });
    off += 16;
  }
  for (const r of ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"]) {
    out.push({ name: r, offset: off, max: r === "cr8" ? 15n : (1n << 64n) - 1n });
    off += 8;
  }
  for (let i = 0; i < 4; i++) {
    out.push({ name: `interrupt_bitmap[${i}]`, offset: off + 8 * i, max: (1n << 64n) - 1n });
  }
  return out;
}

/**
 * The deterministic structural cases for a set of seeds. Each is a function so the list is cheap to build;
 * `seed` names the file it starts from.
 */
export function structuralCases(seeds: SnapshotSeed[]): (() => Case)[] {
  const cases: (() => Case)[] = [];
  let k = 0;
  const nextSeed = () => seeds[k++ % seeds.length];
  const callSeeds = seeds.filter((s) => s.hasSregs);
  const initSeeds = seeds.filter((s) => !s.hasSregs);

  // Every header field to boundary values, once without and once with recomputed hashes.
  for (const f of HEADER) {
    const probe = seeds[0];
    const values = interestingValues(8, readUint(probe.bytes, f.offset, 8), probe.bytes.length);
    for (const v of values) {
      for (const how of ["none", "both"] as const) {
        const s = nextSeed();
        cases.push(() => {
          const orig = readUint(s.bytes, f.offset, 8);
          const value = v === orig ? v + 1n : v;
          return {
            bytes: finish(withField(s.bytes, f.offset, 8, value), how),
            description: `${s.name}: header ${f.name} = ${value} (was ${orig}), rehash ${how}`,
            seed: how === "none" ? s : undefined,
          };
        });
      }
    }
    // Values relative to the seed's own file size and page.
    for (const delta of [-4097, -4096, -1, 1, 4095, 4096]) {
      const s = nextSeed();
      cases.push(() => {
        const orig = readUint(s.bytes, f.offset, 8);
        const value = BigInt.asUintN(64, orig + BigInt(delta));
        return {
          bytes: finish(withField(s.bytes, f.offset, 8, value), "both"),
          description: `${s.name}: header ${f.name} ${delta > 0 ? "+" : ""}${delta} = ${value}, rehashed`,
        };
      });
    }
  }

  // Special registers out of range (and at the edge of their range), hashes recomputed.
  for (const f of sregFields()) {
    const values = new Set<bigint>([0n, 1n, f.max, f.max + 1n, (1n << 64n) - 1n, 1n << 32n, 0x10000n, 16n]);
    for (const v of values) {
      const s = callSeeds[k++ % callSeeds.length];
      cases.push(() => ({
        bytes: finish(withField(s.bytes, f.offset, 8, BigInt.asUintN(64, v)), "header"),
        description: `${s.name}: sregs.${f.name} = ${v}, header rehashed`,
      }));
    }
  }
  // Single control-register bits, hashes recomputed.
  for (const [name, bits] of [["cr0", 32], ["cr4", 24], ["efer", 16]] as const) {
    const f = sregFields().find((x) => x.name === name)!;
    for (let bit = 0; bit < bits; bit++) {
      const s = callSeeds[k++ % callSeeds.length];
      cases.push(() => {
        const orig = readUint(s.bytes, f.offset, 8);
        return {
          bytes: finish(withField(s.bytes, f.offset, 8, orig ^ (1n << BigInt(bit))), "header"),
          description: `${s.name}: sregs.${name} bit ${bit} flipped, header rehashed`,
        };
      });
    }
  }
  // Non-zero special registers in Initialise snapshots (has_sregs 0).
  for (const f of sregFields().filter((_, i) => i % 7 === 0)) {
    const s = initSeeds[k++ % initSeeds.length];
    cases.push(() => ({
      bytes: finish(withField(s.bytes, f.offset, 8, 1n), "header"),
      description: `${s.name}: sregs.${f.name} = 1 with has_sregs 0, header rehashed`,
    }));
  }

  // Hash bytes.
  for (const s of seeds) {
    for (
      const [what, off] of [["header_hash", HEADER_HASH_OFFSET], ["blob_hash", BLOB_HASH_OFFSET]] as const
    ) {
      for (const i of [0, 31]) {
        cases.push(() => {
          const b = s.bytes.slice();
          b[off + i] ^= 1;
          return { bytes: b, description: `${s.name}: ${what} byte ${i} flipped`, seed: s };
        });
      }
      cases.push(() => {
        const b = s.bytes.slice();
        b.fill(0, off, off + 32);
        return { bytes: b, description: `${s.name}: ${what} zeroed`, seed: s };
      });
    }
    cases.push(() => {
      const b = s.bytes.slice();
      b[BLOB_HASH_OFFSET] ^= 0x80;
      return {
        bytes: rehash(b, false),
        description: `${s.name}: blob_hash changed and header_hash recomputed (unchecked loads pass)`,
      };
    });
    cases.push(() => {
      const b = s.bytes.slice();
      b[s.memoryOffset + 0x200000 + 17] ^= 4; // a byte of guest code
      return { bytes: b, description: `${s.name}: one blob byte changed, hashes not`, seed: s };
    });
  }

  // The host-functions section: every byte to boundary values, hashes recomputed.
  for (const s of seeds.filter((x) => x.hostFuncsSize > 0)) {
    for (let i = 0; i < s.hostFuncsSize; i++) {
      const off = HOST_FUNCS_OFFSET + i;
      const orig = s.bytes[off];
      for (const v of [0, 0xff, (orig + 1) & 0xff, 0x80]) {
        if (v === orig) continue;
        cases.push(() => ({
          bytes: finish(withField(s.bytes, off, 1, BigInt(v)), "header"),
          description: `${s.name}: host-functions byte ${i} = ${v} (was ${orig}), header rehashed`,
        }));
      }
    }
    // Its length field against its contents.
    for (const delta of [-5, -1, 1, 2, 100]) {
      cases.push(() => ({
        bytes: finish(
          withField(s.bytes, headerOffset("host_funcs_size"), 8, BigInt(s.hostFuncsSize + delta)),
          "header",
        ),
        description: `${s.name}: host_funcs_size ${s.hostFuncsSize} ${
          delta > 0 ? "+" : ""
        }${delta}, header rehashed`,
      }));
    }
    // The function count, a name length and a tag, to boundary values.
    for (const [what, rel, width] of [["count", 0, 4], ["first name_len", 4, 4]] as const) {
      for (const v of [0n, 1n, 4096n, 4097n, 0xffffffffn, 0x7fffffffn, 256n, 257n]) {
        cases.push(() => ({
          bytes: finish(withField(s.bytes, HOST_FUNCS_OFFSET + rel, width, v), "header"),
          description: `${s.name}: host-functions ${what} = ${v}, header rehashed`,
        }));
      }
    }
    // A name that is not UTF-8.
    cases.push(() => ({
      bytes: finish(withField(s.bytes, HOST_FUNCS_OFFSET + 8, 1, 0xc3n), "header"),
      description: `${s.name}: host-function name with a broken UTF-8 sequence, header rehashed`,
    }));
  }

  // Truncation and extension at every section boundary.
  for (const s of seeds) {
    const bounds = [
      0,
      4,
      8,
      SREGS_OFFSET,
      HEADER_HASH_OFFSET,
      BLOB_HASH_OFFSET,
      HOST_FUNCS_OFFSET,
      HOST_FUNCS_OFFSET + s.hostFuncsSize,
      s.memoryOffset,
      s.memoryOffset + s.memorySize,
      s.memoryOffset + s.memorySize + TRAILING_GUARD_SIZE,
    ];
    for (const b of bounds) {
      for (const d of [-1, 0, 1]) {
        const len = b + d;
        if (len < 0 || len === s.bytes.length) continue;
        cases.push(() => ({
          bytes: resized(s.bytes, len),
          description: `${s.name}: file cut or extended to ${len} bytes (boundary ${b} ${
            d >= 0 ? "+" : ""
          }${d})`,
          seed: s,
        }));
      }
    }
    // Extension at every boundary: bytes inserted there, everything after it shifted.
    for (const b of bounds.slice(2, -1)) {
      for (const n of [1, 4096]) {
        cases.push(() => {
          const out = new Uint8Array(s.bytes.length + n);
          out.set(s.bytes.subarray(0, b));
          out.set(s.bytes.subarray(b), b + n);
          return { bytes: out, description: `${s.name}: ${n} zero bytes inserted at boundary ${b}`, seed: s };
        });
      }
    }
    for (const extra of [4095, 4096, 4097, 1 << 20]) {
      cases.push(() => ({
        bytes: resized(s.bytes, s.bytes.length + extra, 0xa5),
        description: `${s.name}: ${extra} bytes appended`,
        seed: s,
      }));
    }
    // Blob moved: memory_offset + one page with the bytes shifted to match, hashes recomputed.
    cases.push(() => {
      const b = new Uint8Array(s.bytes.length + 4096);
      b.set(s.bytes.subarray(0, s.memoryOffset));
      b.set(s.bytes.subarray(s.memoryOffset), s.memoryOffset + 4096);
      writeUint(b, headerOffset("memory_offset"), 8, BigInt(s.memoryOffset + 4096));
      return { bytes: rehash(b, false), description: `${s.name}: blob moved one page later, rehashed` };
    });
  }
  // Splices of two files at their boundaries.
  for (let i = 0; i < seeds.length; i++) {
    for (const cut of [HEADER_HASH_OFFSET, HOST_FUNCS_OFFSET, 4096]) {
      const a = seeds[i], b = seeds[(i + 1) % seeds.length];
      cases.push(() => {
        const out = new Uint8Array(cut + Math.max(0, b.bytes.length - cut));
        out.set(a.bytes.subarray(0, cut));
        out.set(b.bytes.subarray(cut), cut);
        return { bytes: out, description: `splice ${a.name}[0, ${cut}) + ${b.name}[${cut}, end)` };
      });
    }
  }
  return cases;
}

// ---- random cases ------------------------------------------------------------------------------------------

/** Interesting places in a blob: system area, page tables, function table, image start, heap start. */
function blobRegions(s: SnapshotSeed) {
  const o = s.memoryOffset;
  return [
    { start: o + 0x1000, end: o + 0x3000, weight: 3 },
    { start: o + 0x5000, end: o + 0x9000, weight: 3 },
    { start: o + 0x1e0000, end: o + 0x1e0400, weight: 4 },
    { start: o + 0x200000, end: o + 0x204000, weight: 3 },
    { start: o + s.memorySize - 0x10000, end: o + s.memorySize, weight: 1 },
  ];
}

function randomCase(seeds: SnapshotSeed[], rng: Rng): Case {
  const s = rng.pick(seeds);
  const prefixEnd = HOST_FUNCS_OFFSET + s.hostFuncsSize;
  const kind = rng.weighted(
    [
      [35, "prefix"],
      [20, "field"],
      [20, "blob"],
      [10, "anywhere"],
      [10, "splice"],
      [5, "hostfns"],
    ] as const,
  );
  switch (kind) {
    case "prefix": {
      const how = rng.pick(["none", "header", "header", "both"] as const);
      const m = mutateRandom(rng, s.bytes, {
        regions: [
          { start: 0, end: SREGS_OFFSET, weight: 5 },
          { start: SREGS_OFFSET, end: HEADER_HASH_OFFSET, weight: 3 },
          { start: HEADER_HASH_OFFSET, end: HOST_FUNCS_OFFSET, weight: 1 },
          { start: HOST_FUNCS_OFFSET, end: Math.max(prefixEnd, HOST_FUNCS_OFFSET + 1), weight: 3 },
        ],
      });
      return {
        bytes: finish(m.bytes, how),
        description: `${s.name}: ${m.ops.join("; ")}; rehash ${how}`,
        seed: how === "none" ? s : undefined,
      };
    }
    case "field": {
      const f = rng.pick(HEADER);
      const orig = readUint(s.bytes, f.offset, 8);
      const v = rng.chance(0.8) ? rng.pick(interestingValues(8, orig, s.bytes.length)) : rng.u64();
      const how = rng.pick(["none", "both"] as const);
      return {
        bytes: finish(withField(s.bytes, f.offset, 8, v), how),
        description: `${s.name}: header ${f.name} = ${v}; rehash ${how}`,
        seed: how === "none" ? s : undefined,
      };
    }
    case "blob": {
      // A hostile blob that verifies: the attacker recomputed both hashes.
      const how = rng.pick(["both", "both", "header", "none"] as const);
      const m = mutateRandom(rng, s.bytes, { regions: blobRegions(s), maxOps: 3, maxLength: s.bytes.length });
      const bytes = m.bytes.length === s.bytes.length ? m.bytes : s.bytes.slice();
      return {
        bytes: finish(bytes, how),
        description: `${s.name}: blob ${m.ops.join("; ")}; rehash ${how}`,
        seed: how === "none" ? s : undefined,
      };
    }
    case "anywhere": {
      const m = mutateRandom(rng, s.bytes, { maxOps: 6 });
      return { bytes: m.bytes, description: `${s.name}: ${m.ops.join("; ")}`, seed: s };
    }
    case "splice": {
      const t = rng.pick(seeds);
      const cuts = [
        8,
        SREGS_OFFSET,
        HEADER_HASH_OFFSET,
        BLOB_HASH_OFFSET,
        HOST_FUNCS_OFFSET,
        prefixEnd,
        4096,
      ];
      const m = splice(rng, s.bytes, t.bytes, cuts);
      const how = rng.pick(["none", "header", "both"] as const);
      return {
        bytes: finish(m.bytes, how),
        description: `${s.name} × ${t.name}: ${m.ops[0]}; rehash ${how}`,
      };
    }
    case "hostfns": {
      const m = mutateRandom(rng, s.bytes, {
        regions: [{ start: HOST_FUNCS_OFFSET, end: Math.max(prefixEnd, HOST_FUNCS_OFFSET + 1), weight: 1 }],
        maxOps: 2,
        maxLength: s.bytes.length + 64,
      });
      // Keep the blob where the header says: only in-place changes, plus a matching host_funcs_size.
      const bytes = m.bytes.length === s.bytes.length ? m.bytes : s.bytes.slice();
      if (rng.chance(0.3)) {
        writeUint(
          bytes,
          headerOffset("host_funcs_size"),
          8,
          BigInt(rng.int(s.memoryOffset - HOST_FUNCS_OFFSET + 1)),
        );
      }
      return {
        bytes: rehash(bytes, false),
        description: `${s.name}: host functions ${m.ops.join("; ")}; rehashed`,
      };
    }
  }
}

// ---- running one case --------------------------------------------------------------------------------------

function equalRange(a: Uint8Array, b: Uint8Array, start: number, end: number): boolean {
  if (a.length < end || b.length < end) return false;
  for (let i = start; i < end; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What the file's own fields say, and whether its own hashes verify (the oracle for "success"). */
function selfCheck(bytes: Uint8Array): { headerOk: boolean; blobOk: boolean; complete: boolean } {
  if (bytes.length < HOST_FUNCS_OFFSET) return { headerOk: false, blobOk: false, complete: false };
  const off = readUint(bytes, headerOffset("memory_offset"), 8);
  const size = readUint(bytes, headerOffset("memory_size"), 8);
  const end = hashedEnd(bytes);
  const headerOk = end >= 0 &&
    headerHashTo(bytes, end).every((x, i) => x === bytes[HEADER_HASH_OFFSET + i]);
  const complete = off + size + BigInt(TRAILING_GUARD_SIZE) <= BigInt(bytes.length);
  const blobOk = headerOk && complete &&
    blake3(bytes.subarray(Number(off), Number(off + size))).every((x, i) =>
      x === bytes[BLOB_HASH_OFFSET + i]
    );
  return { headerOk, blobOk, complete };
}

/** Whether `bytes` has the same hashed bytes as `seed` (header-hashed ranges; blob if `blob`). */
function sameHashed(bytes: Uint8Array, seed: SnapshotSeed, blob: boolean): boolean {
  const hfEnd = HOST_FUNCS_OFFSET + seed.hostFuncsSize;
  if (!equalRange(bytes, seed.bytes, 0, HEADER_HASH_OFFSET)) return false;
  if (!equalRange(bytes, seed.bytes, BLOB_HASH_OFFSET, hfEnd)) return false;
  return !blob || equalRange(bytes, seed.bytes, seed.memoryOffset, seed.memoryOffset + seed.memorySize);
}

/** A generic probe for files of unknown origin (corpus replay). */
function genericProbe(sbx: MultiUseSandbox): [string, Value[]] | undefined {
  const fns = sbx.guestFunctions();
  if (fns.some((f) => f.name === "EchoI32")) return ["EchoI32", [42]];
  if (fns.some((f) => f.name === "Twice")) return ["Twice", [21n]];
  const zero = fns.find((f) => f.params.length === 0 && f.name !== "Spin");
  return zero ? [zero.name, []] : undefined;
}

function sameValue(a: Value, b: Value): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  return Object.is(a, b);
}

/** Context shared by the cases of one run. */
export interface SnapshotRunContext {
  /** Where the case file is written. */
  path: string;
  /** Host functions for `fromSnapshot`. */
  hostFunctions: HostFunctions;
  /** Outcome counts. */
  tally: Tally;
}

/**
 * Runs one file through every loader, a sandbox and a restore; returns why its outcome is not allowed, or
 * undefined.
 */
export function runSnapshotCase(ctx: SnapshotRunContext, c: Case): string | undefined {
  const { path, tally } = ctx;
  Deno.writeFileSync(path, c.bytes);
  const size = c.bytes.length;
  const own = selfCheck(c.bytes);
  const problems: string[] = [];
  const intact = c.seed !== undefined && sameHashed(c.bytes, c.seed, true) && own.complete;

  // inspectFile: header only, maps nothing.
  let inspected = false;
  try {
    Snapshot.inspectFile(path);
    inspected = true;
    tally.count("inspect ok");
  } catch (e) {
    tally.count(`inspect ${outcomeName(e)}`);
    const bad = badSnapshotError(e);
    if (bad) problems.push(`inspectFile: ${bad}`);
  }
  if (inspected && !own.headerOk) problems.push("inspectFile succeeded although header_hash does not verify");
  if (mappingsOf(path).length || fdsOf(path).length) {
    problems.push("inspectFile left the file open or mapped");
  }

  const loaded: { snap: Snapshot; checked: boolean }[] = [];
  try {
    for (const checked of [false, true]) {
      let snap: Snapshot | undefined;
      try {
        snap = checked ? Snapshot.fromFile(path) : Snapshot.fromFileUnchecked(path);
        tally.count(`${checked ? "fromFile" : "fromFileUnchecked"} ok`);
      } catch (e) {
        tally.count(`${checked ? "fromFile" : "fromFileUnchecked"} ${outcomeName(e)}`);
        const bad = badSnapshotError(e);
        if (bad) problems.push(`${checked ? "fromFile" : "fromFileUnchecked"}: ${bad}`);
      }
      if (snap === undefined) continue;
      loaded.push({ snap, checked });
      const name = checked ? "fromFile" : "fromFileUnchecked";
      if (!own.headerOk) problems.push(`${name} succeeded although header_hash does not verify`);
      if (checked && !own.blobOk) problems.push("fromFile succeeded although blob_hash does not verify");
      if (!own.complete) {
        problems.push(`${name} succeeded on a file without the whole blob and trailing guard`);
      }
      if (!inspected) problems.push(`${name} succeeded where inspectFile failed`);
      if (c.seed && !sameHashed(c.bytes, c.seed, false)) {
        problems.push(`${name} succeeded although the mutation changed header-hashed bytes`);
      }
      if (checked && c.seed && !sameHashed(c.bytes, c.seed, true)) {
        problems.push("fromFile succeeded although the mutation changed hashed blob bytes");
      }
      const past = mappingPastEnd(path, size);
      if (past) problems.push(`${name}: ${past}`);
    }
    if (loaded.some((l) => l.checked) && !loaded.some((l) => !l.checked)) {
      problems.push("fromFile succeeded where fromFileUnchecked failed");
    }

    // Run a sandbox from the best snapshot: the checked one if it loaded.
    const best = loaded.find((l) => l.checked) ?? loaded[0];
    if (best) problems.push(...runSandbox(ctx, best.snap, c, intact && best.checked, size));
  } finally {
    for (const l of loaded) l.snap.close();
  }
  if (fdsOf(path).length) {
    problems.push(`fd(s) of the file still open after close: ${fdsOf(path).join(", ")}`);
  }
  const left = mappingsOf(path);
  if (left.length) {
    problems.push(`mapping(s) of the file left after close: ${left.map((m) => m.line).join(" / ")}`);
  }
  return problems.length ? problems.join("\n") : undefined;
}

function runSandbox(
  ctx: SnapshotRunContext,
  snap: Snapshot,
  c: Case,
  mustWork: boolean,
  size: number,
): string[] {
  const problems: string[] = [];
  let sbx: MultiUseSandbox;
  try {
    sbx = MultiUseSandbox.fromSnapshot(snap, ctx.hostFunctions, { maxExecutionTimeMs: 250 });
    ctx.tally.count("fromSnapshot ok");
  } catch (e) {
    ctx.tally.count(`fromSnapshot ${outcomeName(e)}`);
    const bad = badSandboxError(e) && badSnapshotError(e);
    if (bad) problems.push(`fromSnapshot: ${describeError(e)}`);
    else if (mustWork) {
      problems.push(`fromSnapshot of a file with a seed's hashed bytes failed: ${describeError(e)}`);
    }
    return problems;
  }
  try {
    const past = mappingPastEnd(ctx.path, size);
    if (past) problems.push(`fromSnapshot: ${past}`);
    const probes: [string, Value[], Value | undefined][] = mustWork && c.seed ? c.seed.probes : (() => {
      const p = genericProbe(sbx);
      return p ? [[p[0], p[1], undefined]] : [];
    })();
    for (let round = 0; round < 2; round++) {
      for (const [fn, args, expected] of probes) {
        try {
          const got = sbx.call(fn, ...args);
          ctx.tally.count("call ok");
          if (mustWork && expected !== undefined && !sameValue(got, expected)) {
            problems.push(`${fn} returned ${String(got)}, expected ${String(expected)} (round ${round})`);
          }
        } catch (e) {
          ctx.tally.count(`call ${outcomeName(e)}`);
          const argProblem = e instanceof TypeError &&
            /^Guest function \S+ (takes|parameter)/.test(e.message);
          if (!argProblem && badSandboxError(e)) problems.push(`call ${fn}: ${describeError(e)}`);
          else if (mustWork) {
            problems.push(`call ${fn} on a file with a seed's hashed bytes failed: ${describeError(e)}`);
          }
          if (isOneOf(e, POISONING_ERRORS) && !sbx.poisoned) {
            problems.push(`${(e as Error).name} did not poison the sandbox`);
          }
        }
      }
      if (round === 0) {
        // Back to the snapshot (clears poisoning), then the same calls again.
        try {
          sbx.restore(snap);
          ctx.tally.count("restore ok");
          if (sbx.poisoned) problems.push("restore did not clear poisoning");
        } catch (e) {
          ctx.tally.count(`restore ${outcomeName(e)}`);
          if (badSandboxError(e)) problems.push(`restore: ${describeError(e)}`);
          else if (mustWork) {
            problems.push(`restore of a file with a seed's hashed bytes failed: ${describeError(e)}`);
          }
          break;
        }
      }
    }
  } finally {
    sbx.close();
  }
  return problems;
}

// ---- the fuzzer --------------------------------------------------------------------------------------------

/**
 * Runs the snapshot fuzzer. Cases `0 .. structural.length - 1` are the structural list, later ones random.
 *
 * @example
 * ```ts ignore
 * const r = await fuzzSnapshots({ seed: 1, iterations: 100 });
 * console.log(r.cases, r.failures.length);
 * ```
 */
export async function fuzzSnapshots(opts: FuzzOptions): Promise<FuzzResult> {
  setLogger(() => {});
  const work = workDirOf(opts);
  try {
    const seeds = await makeSnapshotSeeds(work.dir);
    const structural = structuralCases(seeds);
    const tally = new Tally();
    const ctx: SnapshotRunContext = {
      path: `${work.dir}/case.hls`,
      hostFunctions: fuzzHostFunctions(),
      tally,
    };
    // Warm up (the process keeps /dev/kvm and a keeper VM open), then take the baseline.
    runSnapshotCase(ctx, { bytes: seeds[2].bytes, description: "warm-up", seed: seeds[2] });
    const base = { fds: fdCount(), maps: nativeMapCount() };
    const result = loop("snapshot", opts, tally, (i) => {
      const c = i < structural.length ? structural[i]() : randomCase(seeds, caseRng(opts.seed, i));
      let problem: string | undefined;
      try {
        problem = runSnapshotCase(ctx, c);
      } catch (e) {
        problem = `the harness caught ${describeError(e)}`;
      }
      if (i % 100 === 99 && problem === undefined) {
        const now = { fds: fdCount(), maps: nativeMapCount() };
        if (now.fds > base.fds + 4 || now.maps > base.maps + 8) {
          problem = `resources grew: fds ${base.fds} -> ${now.fds}, mappings ${base.maps} -> ${now.maps}`;
          Object.assign(base, now); // report a leak once, not on every later check
        }
      }
      if (problem !== undefined) {
        tally.fail(opts, "snapshot", i, c.description, problem, () => ({ bytes: c.bytes, ext: ".hls.gz" }));
      }
    });
    return result;
  } finally {
    setLogger(undefined);
    work.cleanup();
  }
}

/** Number of structural cases (the part of a run that is the same for every seed). */
export async function snapshotStructuralCount(): Promise<number> {
  const work = workDirOf({ seed: 0, iterations: 0 });
  try {
    return structuralCases(await makeSnapshotSeeds(work.dir)).length;
  } finally {
    work.cleanup();
  }
}

/** Replays one corpus input; returns why it fails, or undefined. */
export function replaySnapshotInput(bytes: Uint8Array, workDir: string): string | undefined {
  setLogger(() => {});
  try {
    const ctx: SnapshotRunContext = {
      path: `${workDir}/replay.hls`,
      hostFunctions: fuzzHostFunctions(),
      tally: new Tally(),
    };
    return runSnapshotCase(ctx, { bytes, description: "corpus replay" });
  } catch (e) {
    return `the harness caught ${describeError(e)}`;
  } finally {
    setLogger(undefined);
  }
}
