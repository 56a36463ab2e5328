import assert from "node:assert/strict";
import { blake3, blake3Backend, blake3Hex, blake3NativeLibrary } from "../format/blake3.ts";
import { buildBlake3, findBlake3Sources } from "../format/build_blake3.ts";
import { type NativeBlake3, openNativeBlake3 } from "../format/_blake3_native.ts";
import { wasmBlake3 } from "../format/_blake3_wasm.ts";

const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

/** The input pattern of the official BLAKE3 test vectors: byte i is i mod 251. */
function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => i % 251);
}

/** Fast deterministic filler (xorshift32), for inputs too big for crypto.getRandomValues in one call. */
function pseudoRandom(length: number, seed = 0x9e3779b9): Uint8Array {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer, 0, length >>> 2);
  let x = seed;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) bytes[i] = i & 0xff;
  return bytes;
}

/** Cryptographically random bytes; getRandomValues fills at most 64 KiB per call. */
function random(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

// Digests of pattern(n), pinned from `b3sum` 1.2.0 so the test means something even where b3sum is missing.
const PINNED: [number, string][] = [
  [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
  [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
  [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
  [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
];

const ORACLE_INPUTS: [string, Uint8Array][] = [
  ["empty", new Uint8Array(0)],
  ["1 byte", new Uint8Array([0x61])],
  ["1023 bytes", pattern(1023)],
  ["1024 bytes (one chunk)", pattern(1024)],
  ["1025 bytes", pattern(1025)],
  ["2048 bytes", pattern(2048)],
  ["16385 bytes", pattern(16385)],
  ["1 MiB random", random(1 << 20)],
  ["1 MiB + 7 random", pseudoRandom((1 << 20) + 7, 12345)],
];

async function b3sum(data: Uint8Array): Promise<string | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("b3sum", { args: ["--no-names"], stdin: "piped", stdout: "piped" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const writer = child.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const output = await child.output();
  assert.ok(output.success, "b3sum failed");
  return new TextDecoder().decode(output.stdout).trim();
}

let nativePromise: Promise<NativeBlake3 | null> | undefined;
/** Builds the C library into a temporary folder once per test run, and opens it. */
function native(): Promise<NativeBlake3 | null> {
  nativePromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-test-" });
    const path = await buildBlake3(dir);
    return path === null ? null : openNativeBlake3(path);
  })();
  return nativePromise;
}

type Hash = (data: Uint8Array) => Uint8Array;

async function backends(): Promise<[string, Hash][]> {
  const list: [string, Hash][] = [["wasm", wasmBlake3]];
  const library = await native();
  if (library !== null) list.push(["native", (data) => library.hash(data)]);
  else console.log("native BLAKE3 could not be built here: testing WASM only");
  return list;
}

Deno.test("both backends give the pinned digests", async () => {
  for (const [name, hash] of await backends()) {
    for (const [length, expected] of PINNED) {
      assert.equal(hex(hash(pattern(length))), expected, `${name}, ${length}`);
    }
  }
});

Deno.test("both backends agree with the b3sum CLI", async () => {
  const list = await backends();
  for (const [label, data] of ORACLE_INPUTS) {
    const expected = await b3sum(data);
    if (expected === null) {
      console.log("b3sum not installed: oracle comparison skipped");
      return;
    }
    for (const [name, hash] of list) assert.equal(hex(hash(data)), expected, `${name}: ${label}`);
  }
});

Deno.test("blake3() and blake3Hex() use a working backend", async () => {
  const backend = blake3Backend();
  assert.ok(backend === "native" || backend === "wasm");
  assert.equal(blake3NativeLibrary() === null, backend === "wasm");
  const data = pattern(5000);
  assert.equal(blake3Hex(data), await b3sum(data) ?? hex(wasmBlake3(data)));
  assert.equal(blake3(data).length, 32);
});

Deno.test("subarrays are hashed from their offset, not from the start of the buffer", async () => {
  const backing = pattern(10_000);
  const view = backing.subarray(3, 9_000);
  for (const [name, hash] of await backends()) {
    assert.equal(hex(hash(view)), hex(wasmBlake3(view.slice())), name);
    assert.equal(hex(hash(backing.subarray(4000, 4000))), PINNED[0][1], `${name}: empty subarray`);
  }
});

Deno.test("native BLAKE3 hashes an external ArrayBuffer in place (the mmap path)", async () => {
  const library = await native();
  if (library === null) return;
  const owner = pseudoRandom(3 << 20, 77);
  const pointer = Deno.UnsafePointer.of(owner);
  assert.ok(pointer !== null);
  const external = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, owner.length));
  assert.equal(hex(library.hash(external)), hex(wasmBlake3(owner)));
  assert.equal(library.version, findBlake3Sources()?.match(/blake3-([\d.]+)\//)?.[1] ?? library.version);
});

Deno.test("buildBlake3 reuses an up-to-date library and returns null without sources", async () => {
  const library = await native();
  if (library !== null) {
    const before = Deno.statSync(library.path).mtime?.getTime();
    assert.equal(await buildBlake3(library.path.replace(/\/libblake3\.so$/, "")), library.path);
    assert.equal(Deno.statSync(library.path).mtime?.getTime(), before, "must not rebuild");
  }
  const lines: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args);
  try {
    assert.equal(await buildBlake3(await Deno.makeTempDir(), { sourceDir: "/nonexistent/blake3/c" }), null);
  } finally {
    console.error = original;
  }
  assert.equal(lines.length, 1);
  assert.match(String(lines[0][0]), /sources not found/);
});

Deno.test("backend selection: SNAPVM_BLAKE3_LIB is honoured, no FFI permission means WASM", async () => {
  const library = await native();
  const script = new URL("../format/blake3.ts", import.meta.url).href;
  const code = `import { blake3Backend, blake3NativeLibrary } from "${script}";` +
    `console.log(blake3Backend(), blake3NativeLibrary()?.path ?? "-");`;
  // `deno eval` would grant every permission, so run a real script file.
  const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-backend-" });
  const file = `${dir}/probe.ts`;
  await Deno.writeTextFile(file, code);
  const run = async (args: string[], env: Record<string, string>) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-lock",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        ...args,
        file,
      ],
      // From the repository root, so that deno.json (and any import map in it) applies.
      cwd: new URL("..", import.meta.url).pathname,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    return new TextDecoder().decode(output.stdout).trim();
  };
  assert.equal(await run(["--allow-read", "--allow-env"], {}), "wasm -");
  if (library !== null) {
    assert.equal(await run(["-A"], { SNAPVM_BLAKE3_LIB: library.path }), `native ${library.path}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("throughput, 256 MiB (printed, not asserted)", async () => {
  const size = 256 * 1024 * 1024;
  const data = pseudoRandom(size);
  const results: string[] = [];
  let reference: string | undefined;
  for (const [name, hash] of await backends()) {
    let best = Infinity;
    for (let run = 0; run < 3; run++) {
      const start = performance.now();
      const digest = hex(hash(data));
      best = Math.min(best, performance.now() - start);
      reference ??= digest;
      assert.equal(digest, reference, `${name} disagrees on 256 MiB`);
    }
    results.push(`${name} ${(size / (best / 1000) / 1e9).toFixed(2)} GB/s`);
  }
  console.log(`BLAKE3 throughput (best of 3, 256 MiB): ${results.join(", ")}`);
});
