/**
 * Shared by the BLAKE3 tests: the official test vectors, input generators, the `b3sum` oracle, and
 * registration of tests that need a real tool (`gcc`, `b3sum`, the Debian BLAKE3 sources).
 *
 * @module
 */

import assert from "node:assert/strict";
import { findBlake3Sources } from "../../../format/blake3/_sources.ts";

/** Lowercase hex of bytes. */
export const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

/** The input of the official BLAKE3 test vectors: byte i is i mod 251. */
export function pattern(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = i % 251;
  return bytes;
}

/** Fast deterministic filler (xorshift32), for inputs too big for crypto.getRandomValues in one call. */
export function pseudoRandom(length: number, seed = 0x9e3779b9): Uint8Array {
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

/**
 * The official BLAKE3 test vectors (`test_vectors/test_vectors.json` of the BLAKE3 repository): input
 * length and the first 32 bytes of the `hash` output, which is the default-length digest.
 */
export const OFFICIAL_VECTORS: readonly [number, string][] = [
  [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
  [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
  [1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"],
  [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
  [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
  [2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"],
  [2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"],
  [3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2"],
  [3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"],
  [4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"],
  [4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"],
  [5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833"],
  [5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff"],
  [6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205"],
  [6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f"],
  [7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a"],
  [7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817"],
  [8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"],
  [16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4"],
  [31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"],
  [102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"],
];

const KIB = 1024;
const MIB = 1024 * KIB;

/**
 * Lengths that hit every boundary of BLAKE3's tree: around a block, a chunk, powers of two of chunks (where
 * a subtree closes), chunk counts that are not powers of two, and around 1 MiB.
 */
export const BOUNDARY_LENGTHS: readonly number[] = [
  0,
  1,
  63,
  64,
  65,
  1023,
  1024,
  1025,
  2047,
  2048,
  2049,
  3 * KIB,
  5 * KIB + 1,
  7 * KIB,
  13 * KIB + 513,
  16 * KIB,
  17 * KIB - 1,
  31 * KIB,
  100 * KIB + 7,
  MIB - 1,
  MIB,
  MIB + 1,
  MIB + KIB,
  3 * MIB + 5,
  5 * MIB - KIB,
];

/** Whether a program can be started (it answers `--version`). */
export function hasTool(tool: string): boolean {
  try {
    new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

const warned = new Set<string>();

/**
 * Registers a test that needs real tools (and, with `"sources"`, Debian's BLAKE3 C sources). When one is
 * missing, the test is skipped with one loud line, except in CI (`CI=true`), where it fails.
 */
export function toolTest(
  name: string,
  needs: readonly ("gcc" | "b3sum" | "sources")[],
  fn: () => void | Promise<void>,
): void {
  const missing = needs.filter((need) => need === "sources" ? findBlake3Sources() === null : !hasTool(need));
  if (missing.length === 0) {
    Deno.test(name, fn);
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`${missing.join(", ")} missing in CI: install gcc, b3sum and librust-blake3-dev`);
    });
  } else {
    const key = missing.join(",");
    if (!warned.has(key)) {
      console.error(`!!! ${key} not found: SKIPPING the BLAKE3 tests that need it !!!`);
      warned.add(key);
    }
    Deno.test({ name, ignore: true, fn });
  }
}

/** BLAKE3 of `data` from the `b3sum` CLI (the Rust implementation), as hex. */
export async function b3sum(data: Uint8Array): Promise<string> {
  const child = new Deno.Command("b3sum", { args: ["--no-names"], stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const output = await child.output();
  assert.ok(output.success, "b3sum failed");
  return new TextDecoder().decode(output.stdout).trim();
}
