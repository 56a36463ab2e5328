/**
 * Builds what the tests, demo and benchmarks need: the guest binaries (into guest/bin, from guest/ sources,
 * with gcc; without gcc the committed binaries are used, and it says so), and reports which BLAKE3 backend
 * this machine gets.
 *
 * @module
 */
import { buildGuests } from "./guest/build.ts";
import { blake3Info } from "./format/blake3.ts";

const root = new URL(".", import.meta.url).pathname;
const guests = await buildGuests(`${root}guest/bin`);
if (guests.length > 0) console.error(`build: ${guests.length} guest binaries built with gcc into guest/bin`);
const hash = blake3Info();
console.error(
  `build: BLAKE3 backend ${hash.backend} (${hash.threads} thread${hash.threads === 1 ? "" : "s"})`,
);
