/**
 * Builds what the tests, demo and benchmarks need: the guest binaries (into guest/bin, from guest/ sources)
 * and the native BLAKE3 library (into build/). Each step falls back cleanly and says so when a tool is
 * missing.
 *
 * @module
 */
import { buildGuests } from "./guest/build.ts";
import { buildBlake3 } from "./format/build_blake3.ts";

const root = new URL(".", import.meta.url).pathname;
await buildGuests(`${root}guest/bin`);
await buildBlake3(`${root}build`);
