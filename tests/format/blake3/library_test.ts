import assert from "node:assert/strict";
import {
  type Blake3Library,
  openBlake3Library,
  systemLibraryNames,
} from "../../../format/blake3/_library.ts";
import { findBlake3Sources } from "../../../format/blake3/_sources.ts";
import { buildBlake3 } from "../../../format/blake3/build_library.ts";
import {
  b3sum,
  BOUNDARY_LENGTHS,
  hex,
  OFFICIAL_VECTORS,
  pattern,
  pseudoRandom,
  toolTest,
} from "./_helpers.ts";

let built: Promise<Blake3Library> | undefined;
/** The C library, built from Debian's sources into a temporary folder once per run. */
function library(): Promise<Blake3Library> {
  built ??= (async () => {
    const path = await buildBlake3(await Deno.makeTempDir({ prefix: "snapvm-blake3-library-" }));
    assert.ok(path !== null, "gcc and the sources are there, so the build must work");
    return openBlake3Library(path);
  })();
  return built;
}

Deno.test("system library names per OS", () => {
  assert.deepEqual(systemLibraryNames("linux"), ["libblake3.so.0", "libblake3.so"]);
  assert.deepEqual(systemLibraryNames("windows"), ["blake3.dll"]);
  assert.deepEqual(systemLibraryNames("darwin"), ["libblake3.0.dylib", "libblake3.dylib"]);
});

Deno.test("opening a missing library throws", () => {
  assert.throws(() => openBlake3Library("/nonexistent/libblake3.so"));
});

toolTest(
  "the C library gives the official digests and agrees with b3sum",
  ["gcc", "sources", "b3sum"],
  async () => {
    const lib = await library();
    assert.equal(lib.version, findBlake3Sources()?.match(/blake3-([\d.]+)\//)?.[1]);
    for (const [length, expected] of OFFICIAL_VECTORS) assert.equal(hex(lib.hash(pattern(length))), expected);
    for (const length of BOUNDARY_LENGTHS) {
      const data = pseudoRandom(length, length + 11);
      assert.equal(hex(lib.hash(data)), await b3sum(data), `${length} bytes`);
    }
  },
);

toolTest(
  "the C library hashes views from their offset and external memory in place",
  ["gcc", "sources"],
  async () => {
    const lib = await library();
    const owner = pseudoRandom(3 << 20, 77);
    const external = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.of(owner)!, owner.length),
    );
    assert.equal(hex(lib.hash(external)), hex(lib.hash(owner.slice())));
    assert.equal(hex(lib.hash(owner.subarray(5, 70_000))), hex(lib.hash(owner.slice(5, 70_000))));
    assert.equal(hex(lib.hash(owner.subarray(9, 9))), OFFICIAL_VECTORS[0][1]);
  },
);
