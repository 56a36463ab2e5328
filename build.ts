/**
 * Builds what the tests, demo and benchmarks need: the guest binaries (into guest/bin, from guest/ sources)
 * and the native BLAKE3 library (into build/). Each step falls back cleanly and says so when a tool is
 * missing.
 *
 * @module
 */
import { buildGuests } from "./guest/build.ts";
import { buildBlake3 } from "./format/blake3/build_library.ts";

const root = new URL(".", import.meta.url).pathname;
const guests = await buildGuests(`${root}guest/bin`);
if (guests.length > 0) console.error(`build: ${guests.length} guest binaries built with gcc into guest/bin`);
const blake3 = await buildBlake3(`${root}build`);
console.error(
  blake3 !== null
    ? `build: native BLAKE3 library ready (${blake3.slice(root.length)})`
    : "build: no native BLAKE3 library; snapshot hashing uses the WASM fallback",
);
