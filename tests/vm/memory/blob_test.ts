// Layered blobs (vm/memory/blob.ts): a base with delta layers over it, later layers winning, mapped in place
// (overlays) or copied once (too many pieces); the reference view and sandbox memory both see the result.
import assert from "node:assert/strict";
import { Blob, MAX_OVERLAY_SEGMENTS } from "../../../vm/memory/blob.ts";
import { Mapping, osMemory } from "../../../vm/memory/mapping.ts";
import type { PageRun } from "../../../format/sections.ts";
import { backingFd } from "../../../vm/memory/posix/os_memory.ts";
import { dataRunsOfFd } from "../../../vm/snapshot/_pages.ts";

const PAGE = 4096;
const PAGES = 300;

/** A page's contents: its page number and which layer wrote it, in every byte pair. */
function pageOf(page: number, layer: number): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 2) {
    bytes[i] = page & 0xff;
    bytes[i + 1] = layer;
  }
  return bytes;
}

/** The packed pages of a layer: exactly what a delta file stores for these runs. */
function packed(runs: PageRun[], layer: number): Uint8Array {
  const pages = runs.reduce((n, r) => n + r.count, 0);
  const bytes = new Uint8Array(pages * PAGE);
  let at = 0;
  for (const r of runs) {
    for (let p = r.first; p < r.first + r.count; p++, at++) bytes.set(pageOf(p, layer), at * PAGE);
  }
  return bytes;
}

/** Which layer each page should come from, applying layers in order. */
function expected(layers: PageRun[][]): number[] {
  const owner = new Array(PAGES).fill(0);
  layers.forEach((runs, k) => {
    for (const r of runs) for (let p = r.first; p < r.first + r.count; p++) owner[p] = k + 1;
  });
  return owner;
}

function base(): Uint8Array {
  const bytes = new Uint8Array(PAGES * PAGE);
  for (let p = 0; p < PAGES; p++) bytes.set(pageOf(p, 0), p * PAGE);
  return bytes;
}

function check(bytes: Uint8Array, owner: number[], what: string): void {
  for (let p = 0; p < PAGES; p++) {
    assert.equal(bytes[p * PAGE], p & 0xff, `${what}: page ${p} number`);
    assert.equal(bytes[p * PAGE + 1], owner[p], `${what}: page ${p} comes from layer ${owner[p]}`);
    assert.equal(bytes[p * PAGE + PAGE - 1], owner[p], `${what}: page ${p} last byte`);
  }
}

function layered(layers: PageRun[][]): Blob {
  return Blob.layered(
    osMemory.sealedBytes(base()),
    layers.map((runs, k) => ({ backing: osMemory.sealedBytes(packed(runs, k + 1)), runs })),
  );
}

const LAYERS: PageRun[][] = [
  [{ first: 0, count: 3 }, { first: 10, count: 20 }, { first: 100, count: 1 }, { first: 298, count: 2 }],
  [{ first: 2, count: 10 }, { first: 15, count: 2 }, { first: 29, count: 5 }, { first: 200, count: 50 }],
  [{ first: 12, count: 6 }, { first: 100, count: 150 }],
];

Deno.test({
  name: "a layered blob shows every page from the topmost layer that stores it (overlays in place)",
  ignore: Deno.build.os !== "linux",
  fn() {
    using blob = layered(LAYERS);
    assert.ok(blob.overlays.length === 3, "mapped in place");
    const pieces = blob.overlays.reduce((n, o) => n + o.segments.length, 0);
    assert.ok(pieces <= MAX_OVERLAY_SEGMENTS);
    const owner = expected(LAYERS);
    check(blob.ref.bytes, owner, "reference view");
    using memory = Mapping.reserve(PAGES * PAGE);
    blob.mapInto(memory);
    check(memory.bytes, owner, "copy-on-write memory");
    assert.equal(Blob.mappedInto(memory), blob);
    // Writes stay private to the memory: the blob and its files are unchanged.
    memory.bytes.fill(7, 0, PAGES * PAGE);
    check(blob.ref.bytes, owner, "reference view after writes to the memory");
    blob.mapInto(memory);
    check(memory.bytes, owner, "memory mapped again");
  },
});

Deno.test("a blob with more pieces than MAX_OVERLAY_SEGMENTS is copied once into a sealed backing", () => {
  const many: PageRun[] = Array.from({ length: 100 }, (_, i) => ({ first: 3 * i, count: 1 }));
  const layers = [...LAYERS, many];
  using blob = layered(layers);
  assert.equal(blob.overlays.length, 0);
  const owner = expected(layers);
  check(blob.ref.bytes, owner, "copied blob");
  using memory = Mapping.reserve(PAGES * PAGE);
  blob.mapInto(memory);
  check(memory.bytes, owner, "memory from the copied blob");
});

Deno.test("empty layers and a layer identical to the base are fine", () => {
  using blob = layered([[], [{ first: 0, count: PAGES }], []]);
  check(blob.ref.bytes, new Array(PAGES).fill(2), "whole-blob layer");
});

Deno.test("copyOf with a hint copies exactly the hinted pages; the rest reads as zeros", () => {
  using memory = Mapping.reserve(16 * PAGE);
  memory.bytes.fill(9);
  using hinted = Blob.copyOf(memory, [{ first: 1, count: 2 }, { first: 10, count: 1 }]);
  for (let p = 0; p < 16; p++) {
    const want = p === 1 || p === 2 || p === 10 ? 9 : 0;
    assert.equal(hinted.ref.bytes[p * PAGE + 5], want, `page ${p}`);
  }
  assert.deepEqual(hinted.hint, [{ first: 1, count: 2 }, { first: 10, count: 1 }]);
  using plain = Blob.copyOf(memory);
  assert.equal(plain.hint, undefined);
  assert.ok(plain.ref.bytes.every((b) => b === 9));
});

Deno.test("copyOf with a hint writes only the hinted pages: the rest of the in-memory copy is holes", () => {
  using memory = Mapping.reserve(1024 * PAGE);
  memory.bytes.fill(7, 3 * PAGE, 5 * PAGE);
  memory.bytes.fill(8, 700 * PAGE, 701 * PAGE);
  using hinted = Blob.copyOf(memory, [{ first: 3, count: 2 }, { first: 700, count: 1 }]);
  if (Deno.build.os === "linux") {
    // The memfd stores 3 pages: the rest are holes (tmpfs allocates nothing for them).
    const fd = backingFd(hinted.backing);
    assert.equal(Deno.statSync(`/proc/self/fd/${fd}`).blocks! * 512, 3 * PAGE);
    assert.deepEqual(dataRunsOfFd(fd, 0, hinted.size), [{ first: 3, count: 2 }, { first: 700, count: 1 }]);
  }
  assert.deepEqual(hinted.read(3 * PAGE, 2), new Uint8Array([7, 7]));
  assert.deepEqual(hinted.read(700 * PAGE + PAGE - 1, 1), new Uint8Array([8]));
  assert.ok(hinted.ref.bytes.subarray(5 * PAGE, 700 * PAGE).every((b) => b === 0));
  assert.ok(hinted.ref.bytes.subarray(701 * PAGE).every((b) => b === 0));
  if (Deno.build.os === "linux") {
    // Reading the whole view (as hashing does) maps zero pages for the holes: the memfd stays 3 pages.
    const fd = backingFd(hinted.backing);
    assert.equal(Deno.statSync(`/proc/self/fd/${fd}`).blocks! * 512, 3 * PAGE);
  }
  // A run outside the memory is refused, before anything is sealed.
  assert.throws(
    () => osMemory.sealedCopy(memory.pointer, memory.size, [{ first: 1023, count: 2 }]),
    RangeError,
  );
});

Deno.test("onMapInto sees every memory the blob is mapped into until stopped", () => {
  using blob = Blob.fromBytes(new Uint8Array(PAGE).fill(1));
  const seen: Mapping[] = [];
  const stop = blob.onMapInto((m) => seen.push(m));
  using a = Mapping.reserve(PAGE);
  blob.mapInto(a);
  stop();
  using b = Mapping.reserve(PAGE);
  blob.mapInto(b);
  assert.deepEqual(seen, [a]);
});
