/**
 * BLAKE3 at snapshot size: every backend of `format/blake3.ts` on one 256 MiB file, next to the `b3sum` CLI
 * (the official Rust implementation) on the same file, measured in the same run, interleaved round by round
 * so that a noisy neighbour slows every row alike. Prints median and p90 per row and checks that every
 * digest is b3sum's.
 *
 * Usage: `deno run -A bench/hash.ts [--runs N] [--size MiB]`. `deno run -A --no-lock bench/hash.ts --napi`
 * adds `@napi-rs/blake-hash` (prebuilt Rust BLAKE3 for Node-API, fetched from npm), the alternative that was
 * measured and not taken; `--no-lock` keeps it out of deno.lock, as it is no dependency of snapvm.
 *
 * The b3sum rows include starting the process (about 1 ms, printed as "b3sum, empty file"). The "fresh
 * mmap" row maps the file anew for every run, as `Snapshot.fromFile` does, so it pays the same page faults
 * as b3sum, which also maps the file.
 *
 * @module
 */
import { libc, MAP_FAILED, MAP_SHARED, O_CLOEXEC, O_RDONLY, PROT_READ } from "../ffi/linux/libc.ts";
import { blake3Info } from "../format/blake3.ts";
import { openBlake3Library } from "../format/blake3/_library.ts";
import { loadNativeKernel } from "../format/blake3/_native.ts";
import { wasmBlake3 } from "../format/blake3/_wasm.ts";
import { buildBlake3 } from "../format/blake3/build_library.ts";
import { type Stat, stat, us } from "./_stats.ts";
import { b3sum } from "./_b3sum.ts";

const arg = (name: string) => Deno.args.indexOf(name);
const RUNS = arg("--runs") >= 0 ? Number(Deno.args[arg("--runs") + 1]) : 15;
const SIZE = (arg("--size") >= 0 ? Number(Deno.args[arg("--size") + 1]) : 256) * 1024 * 1024;
const WARMUP = 2;
const log = (s: string) => console.error(`hash bench: ${s}`);
const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

/** Deterministic pseudo-random bytes (xorshift32): incompressible, and the same in every run. */
function pseudoRandom(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer, 0, length >>> 2);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return bytes;
}

/** Hashes a fresh read-only shared mapping of `path` (faults included), then unmaps it. */
function hashFreshMapping(path: string, length: number, hash: (data: Uint8Array) => Uint8Array): Uint8Array {
  const c = libc();
  const fd = c.open(new TextEncoder().encode(`${path}\0`), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw new Error(`Cannot open ${path}`);
  try {
    const base = c.mmap(null, BigInt(length), PROT_READ, MAP_SHARED, fd, 0n);
    if (base === null || BigInt(Deno.UnsafePointer.value(base)) === MAP_FAILED) {
      throw new Error("mmap failed");
    }
    try {
      // The view is local to this block and unreachable once munmap runs.
      return hash(new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(base, length)));
    } finally {
      c.munmap(base, BigInt(length));
    }
  } finally {
    c.close(fd);
  }
}

interface Row {
  name: string;
  /** Runs once and returns the digest in hex. */
  run: () => string | Promise<string>;
  /** Digest of the 256 MiB file (the empty-file row has its own). */
  checked: boolean;
  samples: number[];
}

const dir = await Deno.makeTempDir({ prefix: "snapvm-hash-bench-" });
try {
  const file = `${dir}/blob.bin`;
  const empty = `${dir}/empty.bin`;
  log(`writing ${SIZE >> 20} MiB of pseudo-random bytes`);
  const data = pseudoRandom(SIZE);
  await Deno.writeFile(file, data);
  await Deno.writeFile(empty, new Uint8Array(0));
  const expected = await b3sum([file]); // also brings the file into the page cache

  const kernel = loadNativeKernel();
  const rows: Row[] = [];
  const add = (name: string, run: Row["run"], checked = true) =>
    rows.push({ name, run, checked, samples: [] });
  add(`native, ${kernel.threads} threads, fresh mmap`, () => hex(hashFreshMapping(file, SIZE, kernel.hash)));
  add(`native, ${kernel.threads} threads, in memory`, () => hex(kernel.hash(data)));
  add("native, 1 thread, in memory", () => hex(kernel.hashWith(data, 1)));
  const libraryPath = await buildBlake3(`${dir}/lib`);
  if (libraryPath !== null) {
    const library = openBlake3Library(libraryPath);
    add("library (libblake3.so), 1 thread", () => hex(library.hash(data)));
  } else {
    log("no gcc or BLAKE3 sources: the library row is left out");
  }
  add("wasm (blake3-jit), 1 thread", () => hex(wasmBlake3(data)));
  if (arg("--napi") >= 0) {
    // A computed specifier, so that `deno check` does not fetch it: only this optional row needs it.
    const specifier = ["npm:@napi-rs/blake-hash", "1.3.4"].join("@");
    const napi = await import(specifier) as { blake3(input: Uint8Array): Uint8Array };
    add("napi (@napi-rs/blake-hash 1.3.4), 1 thread", () => hex(napi.blake3(data)));
  }
  add("b3sum --num-threads 2", () => b3sum(["--num-threads", "2", file]));
  add("b3sum --num-threads 1", () => b3sum(["--num-threads", "1", file]));
  add("b3sum, empty file (process start)", () => b3sum([empty]), false);

  log(`${WARMUP} warm-up + ${RUNS} rounds over ${rows.length} rows, interleaved`);
  for (let round = -WARMUP; round < RUNS; round++) {
    for (const row of rows) {
      const start = performance.now();
      const digest = await row.run();
      const elapsed = performance.now() - start;
      if (row.checked && digest !== expected) {
        throw new Error(`${row.name}: digest ${digest}, b3sum ${expected}`);
      }
      if (round >= 0) row.samples.push(elapsed);
    }
  }

  const stats = new Map<string, Stat>(rows.map((row) => [row.name, stat(row.samples)]));
  const reference = stats.get("b3sum --num-threads 2")!;
  const width = Math.max(...rows.map((row) => row.name.length));
  const lines = [
    `\n## BLAKE3, ${
      SIZE >> 20
    } MiB (median / p90 of ${RUNS} interleaved runs; ${navigator.hardwareConcurrency} CPUs;` +
    ` blake3() uses: ${blake3Info().implementation})\n`,
    `| ${"backend".padEnd(width)} | median | p90 | GB/s | vs b3sum -t2 |`,
    `| ${"-".repeat(width)} | ---: | ---: | ---: | ---: |`,
  ];
  for (const row of rows) {
    const s = stats.get(row.name)!;
    const rate = row.checked ? (SIZE / (s.median / 1e6) / 1e9).toFixed(2) : "";
    const ratio = row.checked ? `${(s.median / reference.median).toFixed(2)}x` : "";
    lines.push(`| ${row.name.padEnd(width)} | ${us(s.median)} | ${us(s.p90)} | ${rate} | ${ratio} |`);
  }
  const native = stats.get(rows[0].name)!;
  const verdict = native.median <= 1.1 * reference.median ? "met" : "NOT met";
  lines.push(
    "",
    `target (fresh-mmap native <= 1.1x b3sum --num-threads 2): ${verdict}` +
      ` (${(native.median / reference.median).toFixed(2)}x); every digest = b3sum's ${
        expected.slice(0, 16)
      }…`,
  );
  console.log(lines.join("\n"));
  kernel.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
