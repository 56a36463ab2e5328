/**
 * Fuzzer 2: guest ELF binaries. Mutates the real guest binaries (ELF header fields, program headers,
 * segment sizes and offsets, the entry point, overlapping and huge segments, truncation) and gives them to
 * `new UninitializedSandbox` and `evolve`; a sandbox that starts is called, and now and then also started
 * from its pre-init snapshot.
 *
 * Allowed: `GuestBinaryError` from the constructor, a typed sandbox error from `evolve` or a call, or a
 * working sandbox. A mutation that leaves the loaded image unchanged (same segments, same bytes, same entry)
 * must behave exactly like the original binary. fds and mappings must not grow.
 *
 * @module
 */
import { GuestBinaryError, MultiUseSandbox, setLogger, UninitializedSandbox } from "../../mod.ts";
import type { Value } from "../../mod.ts";
import { parseElf } from "../../vm/machine/elf.ts";
import { caseRng, type Rng } from "./_rng.ts";
import { interestingValues, mutateRandom, readUint, resized, splice, withField } from "./_mutate.ts";
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

/** A starting binary and what its sandbox must answer. */
interface ElfSeed {
  name: string;
  bytes: Uint8Array;
  probe: [string, Value[], Value] | undefined;
  phoff: number;
  phnum: number;
}

interface Case {
  bytes: Uint8Array;
  description: string;
  seed?: ElfSeed;
}

const ELF_FIELDS: [string, number, 1 | 2 | 4 | 8][] = [
  ["EI_CLASS", 4, 1],
  ["EI_DATA", 5, 1],
  ["EI_VERSION", 6, 1],
  ["EI_OSABI", 7, 1],
  ["e_type", 16, 2],
  ["e_machine", 18, 2],
  ["e_version", 20, 4],
  ["e_entry", 24, 8],
  ["e_phoff", 32, 8],
  ["e_shoff", 40, 8],
  ["e_flags", 48, 4],
  ["e_ehsize", 52, 2],
  ["e_phentsize", 54, 2],
  ["e_phnum", 56, 2],
  ["e_shentsize", 58, 2],
  ["e_shnum", 60, 2],
  ["e_shstrndx", 62, 2],
];

const PH_FIELDS: [string, number, 4 | 8][] = [
  ["p_type", 0, 4],
  ["p_flags", 4, 4],
  ["p_offset", 8, 8],
  ["p_vaddr", 16, 8],
  ["p_paddr", 24, 8],
  ["p_filesz", 32, 8],
  ["p_memsz", 40, 8],
  ["p_align", 48, 8],
];

const MiB = 1024n * 1024n;
/** Values that matter for addresses and sizes of a guest image linked at 0x200000 (max 64 MiB). */
const ADDRESS_VALUES = [
  0x1ff000n,
  0x200000n,
  0x200001n,
  0x200fffn,
  0x4200000n,
  0x41ff000n,
  64n * MiB,
  64n * MiB + 1n,
  64n * MiB - 4096n,
  1024n * MiB,
  1n << 47n,
  1n << 53n,
  (1n << 53n) + 1n,
  1n << 63n,
];

export function loadSeeds(): ElfSeed[] {
  const probes: Record<string, [string, Value[], Value] | undefined> = {
    testguest: ["EchoI32", [42], 42],
    hello: ["Twice", [21n], 42n],
    fuzzguest: ["Counter", [], 1],
    badinit: undefined,
  };
  return Object.entries(probes).map(([name, probe]) => {
    const bytes = Deno.readFileSync(guestBinary(name));
    return {
      name,
      bytes,
      probe,
      phoff: Number(readUint(bytes, 32, 8)),
      phnum: Number(readUint(bytes, 56, 2)),
    };
  });
}

/** The deterministic structural cases. */
export function structuralElfCases(seeds: ElfSeed[]): (() => Case)[] {
  const cases: (() => Case)[] = [];
  let k = 0;
  const next = () => seeds[k++ % seeds.length];
  for (const [name, off, width] of ELF_FIELDS) {
    const probe = seeds[0];
    for (const v of interestingValues(width, readUint(probe.bytes, off, width), probe.bytes.length)) {
      const s = next();
      cases.push(() => ({
        bytes: withField(s.bytes, off, width, v),
        description: `${s.name}: ${name} = ${v}`,
        seed: s,
      }));
    }
  }
  // Entry point: inside and at the edges of every segment, and outside.
  for (const s of seeds) {
    for (let i = 0; i < s.phnum; i++) {
      const ph = s.phoff + 56 * i;
      if (readUint(s.bytes, ph, 4) !== 1n) continue;
      const vaddr = readUint(s.bytes, ph + 16, 8), memsz = readUint(s.bytes, ph + 40, 8);
      for (const e of [vaddr, vaddr + memsz - 1n, vaddr + memsz, vaddr + 1n, vaddr - 1n]) {
        cases.push(() => ({
          bytes: withField(s.bytes, 24, 8, e),
          description: `${s.name}: e_entry = 0x${e.toString(16)} (segment ${i} edge)`,
          seed: s,
        }));
      }
    }
  }
  // Every program-header field of every header to boundary and address values.
  for (const s of seeds) {
    for (let i = 0; i < s.phnum; i++) {
      const ph = s.phoff + 56 * i;
      for (const [name, rel, width] of PH_FIELDS) {
        const orig = readUint(s.bytes, ph + rel, width);
        const values = new Set(interestingValues(width, orig, s.bytes.length));
        if (width === 8 && name !== "p_align") { for (const v of ADDRESS_VALUES) values.add(v); }
        if (name === "p_type") { for (const v of [0n, 2n, 3n, 4n, 6n, 7n, 0x6474e551n]) values.add(v); }
        if (name === "p_flags") { for (const v of [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n]) values.add(v); }
        for (const v of values) {
          if (v === orig) continue;
          cases.push(() => ({
            bytes: withField(s.bytes, ph + rel, width, v),
            description: `${s.name}: phdr ${i} ${name} = 0x${v.toString(16)} (was 0x${orig.toString(16)})`,
            seed: s,
          }));
        }
      }
    }
  }
  // Overlapping segments: each segment moved onto the previous one's address or page.
  for (const s of seeds) {
    for (let i = 1; i < s.phnum; i++) {
      const ph = s.phoff + 56 * i, prev = s.phoff + 56 * (i - 1);
      const pv = readUint(s.bytes, prev + 16, 8), pm = readUint(s.bytes, prev + 40, 8);
      for (const v of [pv, pv + 4096n, (pv + pm - 1n) & ~4095n]) {
        cases.push(() => ({
          bytes: withField(s.bytes, ph + 16, 8, v),
          description: `${s.name}: phdr ${i} p_vaddr = 0x${v.toString(16)} (onto phdr ${i - 1})`,
          seed: s,
        }));
      }
      // Huge memsz of the previous segment, reaching over this one.
      cases.push(() => ({
        bytes: withField(s.bytes, prev + 40, 8, 64n * MiB - (pv - 0x200000n)),
        description: `${s.name}: phdr ${i - 1} p_memsz up to the 64 MiB image limit`,
        seed: s,
      }));
    }
  }
  // Truncation at the program headers and at segment boundaries.
  for (const s of seeds) {
    const bounds = [
      0,
      4,
      16,
      63,
      64,
      s.phoff,
      s.phoff + 56,
      s.phoff + 56 * s.phnum - 1,
      s.phoff + 56 * s.phnum,
    ];
    for (let i = 0; i < s.phnum; i++) {
      const ph = s.phoff + 56 * i;
      const off = Number(readUint(s.bytes, ph + 8, 8)), fsz = Number(readUint(s.bytes, ph + 32, 8));
      bounds.push(off, off + 1, off + fsz - 1, off + fsz);
    }
    for (const b of bounds) {
      if (b < 0 || b >= s.bytes.length) continue;
      cases.push(() => ({
        bytes: resized(s.bytes, b),
        description: `${s.name}: truncated to ${b} bytes`,
        seed: s,
      }));
    }
    cases.push(() => ({
      bytes: resized(s.bytes, s.bytes.length + 4096, 0xcc),
      description: `${s.name}: 4096 bytes appended`,
      seed: s,
    }));
  }
  return cases;
}

function randomElfCase(seeds: ElfSeed[], rng: Rng): Case {
  const s = rng.pick(seeds);
  const phEnd = s.phoff + 56 * s.phnum;
  const kind = rng.weighted([[50, "headers"], [25, "anywhere"], [15, "field"], [10, "splice"]] as const);
  if (kind === "splice") {
    const t = rng.pick(seeds);
    const m = splice(rng, s.bytes, t.bytes, [64, s.phoff, phEnd, 4096]);
    return { bytes: m.bytes, description: `${s.name} × ${t.name}: ${m.ops[0]}` };
  }
  if (kind === "field") {
    const i = rng.int(s.phnum);
    const [name, rel, width] = rng.pick(PH_FIELDS);
    const off = s.phoff + 56 * i + rel;
    const v = rng.chance(0.5)
      ? rng.pick(ADDRESS_VALUES)
      : rng.pick(interestingValues(width, readUint(s.bytes, off, width), s.bytes.length));
    const m = mutateRandom(rng, withField(s.bytes, off, width, v), {
      maxOps: 1,
      regions: [{ start: 0, end: phEnd, weight: 1 }],
    });
    return {
      bytes: m.bytes,
      description: `${s.name}: phdr ${i} ${name} = 0x${v.toString(16)}; ${m.ops.join("; ")}`,
      seed: s,
    };
  }
  const m = mutateRandom(rng, s.bytes, {
    maxOps: kind === "headers" ? 3 : 6,
    regions: kind === "headers"
      ? [{ start: 0, end: 64, weight: 2 }, { start: s.phoff, end: phEnd, weight: 5 }]
      : undefined,
  });
  return { bytes: m.bytes, description: `${s.name}: ${m.ops.join("; ")}`, seed: s };
}

function sameImage(a: Uint8Array, b: Uint8Array): boolean {
  let x, y;
  try {
    x = parseElf(a);
    y = parseElf(b);
  } catch {
    return false;
  }
  if (x.entry !== y.entry || x.end !== y.end || x.segments.length !== y.segments.length) return false;
  for (let i = 0; i < x.segments.length; i++) {
    const p = x.segments[i], q = y.segments[i];
    if (p.vaddr !== q.vaddr || p.memSize !== q.memSize || p.fileSize !== q.fileSize || p.flags !== q.flags) {
      return false;
    }
    for (let j = 0; j < p.fileSize; j++) if (a[p.fileOffset + j] !== b[q.fileOffset + j]) return false;
  }
  return true;
}

function sameValue(a: Value, b: Value): boolean {
  return Object.is(a, b);
}

const CONFIG = { heapSize: 64 * 1024, stackSize: 32 * 1024, maxExecutionTimeMs: 250 };

/** Runs one binary; returns why its outcome is not allowed, or undefined. */
export function runElfCase(c: Case, tally: Tally, withSnapshot: boolean): string | undefined {
  const problems: string[] = [];
  const mustWork = c.seed !== undefined && c.seed.probe !== undefined && sameImage(c.bytes, c.seed.bytes);
  let u: UninitializedSandbox;
  try {
    u = new UninitializedSandbox(c.bytes, CONFIG);
    u.registerHostFunction(
      "Add",
      { params: ["i32", "i32"], returns: "i32" },
      (a: number, b: number) => (a + b) | 0,
    );
    u.registerPrint(() => {});
    tally.count("parse ok");
  } catch (e) {
    tally.count(`parse ${outcomeName(e)}`);
    if (!(e instanceof GuestBinaryError) || !e.message) return `constructor: ${describeError(e)}`;
    if (mustWork) return `constructor refused an image equal to ${c.seed!.name}'s: ${e.message}`;
    return undefined;
  }
  const sandboxes: [string, () => MultiUseSandbox][] = [["evolve", () => u.evolve()]];
  if (withSnapshot) {
    sandboxes.push(["fromSnapshot(u.snapshot())", () => {
      using snap = u.snapshot(); // the sandbox does not need the Snapshot object once made
      return MultiUseSandbox.fromSnapshot(snap, u.hostFunctions, CONFIG);
    }]);
  }
  for (const [how, make] of sandboxes) {
    let sbx: MultiUseSandbox;
    try {
      sbx = make();
      tally.count(`${how} ok`);
    } catch (e) {
      tally.count(`${how} ${outcomeName(e)}`);
      const bad = badSandboxError(e);
      if (bad) problems.push(`${how}: ${bad}`);
      else if (mustWork) {
        problems.push(`${how} of an image equal to ${c.seed!.name}'s failed: ${describeError(e)}`);
      }
      continue;
    }
    try {
      const probe = mustWork ? c.seed!.probe! : pickProbe(sbx);
      if (probe) {
        try {
          const got = sbx.call(probe[0], ...probe[1]);
          tally.count("call ok");
          if (mustWork && !sameValue(got, probe[2])) {
            problems.push(`${probe[0]} returned ${got}, expected ${probe[2]}`);
          }
        } catch (e) {
          tally.count(`call ${outcomeName(e)}`);
          const bad = badSandboxError(e);
          if (bad) problems.push(`call ${probe[0]}: ${bad}`);
          else if (mustWork) {
            problems.push(`call on an image equal to ${c.seed!.name}'s failed: ${describeError(e)}`);
          }
          if (isOneOf(e, POISONING_ERRORS) && !sbx.poisoned) {
            problems.push(`${(e as Error).name} did not poison`);
          }
        }
      }
    } finally {
      sbx.close();
    }
  }
  return problems.length ? problems.join("\n") : undefined;
}

function pickProbe(sbx: MultiUseSandbox): [string, Value[], Value] | undefined {
  // A mutated image may register these names with other signatures: call only an exact match.
  const fns = sbx.guestFunctions();
  for (
    const [name, params, args] of [["EchoI32", ["i32"], [42]], ["Twice", ["i64"], [21n]], [
      "Counter",
      [],
      [],
    ]] as const
  ) {
    const f = fns.find((x) => x.name === name);
    if (f && f.params.length === params.length && f.params.every((p, i) => p === params[i])) {
      return [name, [...args], undefined];
    }
  }
  return undefined;
}

/**
 * Runs the ELF fuzzer. Cases `0 .. structural.length - 1` are the structural list, later ones random.
 *
 * @example
 * ```ts ignore
 * const r = fuzzElf({ seed: 1, iterations: 100 });
 * ```
 */
export function fuzzElf(opts: FuzzOptions): Promise<FuzzResult> {
  setLogger(() => {});
  const work = workDirOf(opts);
  try {
    const seeds = loadSeeds();
    const structural = structuralElfCases(seeds);
    const tally = new Tally();
    runElfCase({ bytes: seeds[0].bytes, description: "warm-up", seed: seeds[0] }, tally, true);
    const base = { fds: fdCount(), maps: nativeMapCount() };
    const inflight = `${work.dir}/case.elf`;
    return Promise.resolve(loop("elf", opts, tally, (i) => {
      const rng = caseRng(opts.seed, i);
      const c = i < structural.length ? structural[i]() : randomElfCase(seeds, rng);
      Deno.writeFileSync(inflight, c.bytes);
      let problem: string | undefined;
      try {
        problem = runElfCase(c, tally, i % 8 === 0);
      } catch (e) {
        problem = `the harness caught ${describeError(e)}`;
      }
      if (i % 100 === 99 && problem === undefined) {
        const now = { fds: fdCount(), maps: nativeMapCount() };
        if (now.fds > base.fds + 4 || now.maps > base.maps + 8) {
          problem = `resources grew: fds ${base.fds} -> ${now.fds}, mappings ${base.maps} -> ${now.maps}`;
          Object.assign(base, now);
        }
      }
      if (problem !== undefined) {
        tally.fail(opts, "elf", i, c.description, problem, () => ({ bytes: c.bytes, ext: ".elf" }));
      }
    }));
  } finally {
    setLogger(undefined);
    work.cleanup();
  }
}

/** Number of structural cases. */
export function elfStructuralCount(): number {
  return structuralElfCases(loadSeeds()).length;
}

/** Replays one corpus input; returns why it fails, or undefined. */
export function replayElfInput(bytes: Uint8Array): string | undefined {
  setLogger(() => {});
  try {
    return runElfCase({ bytes, description: "corpus replay" }, new Tally(), true);
  } catch (e) {
    return `the harness caught ${describeError(e)}`;
  } finally {
    setLogger(undefined);
  }
}
