/**
 * Sealed in-memory copies of system areas, shared by every snapshot with the same layout and image
 * page-table entries, counted by reference. A sandbox made from a snapshot maps its system area from here,
 * never from the snapshot's memory blob (see `system_area.ts`): one extra mapping per sandbox, no copying,
 * and the pages stay shared.
 *
 * @module
 */
import type { Layout } from "./layout.ts";
import { buildSystemArea, imagePageEntries } from "./system_area.ts";
import { Blob } from "../memory/blob.ts";

/**
 * A reference to a shared system area. `release()` once per reference (idempotent).
 *
 * @example
 * ```ts ignore
 * const system = systemAreaFor(snapshotBlob, layout);
 * sandboxMemory.mapCopyOnWrite(system.blob.backing);
 * system.release();
 * ```
 */
export interface SystemArea {
  /** The system area's bytes (guest-physical 0 to `SYSTEM_AREA_END`). */
  readonly blob: Blob;
  /** Drops this reference. */
  release(): void;
}

interface Entry {
  /** The image's page-table entries the area was built with (the layout is part of the key). */
  image: Uint8Array;
  blob: Blob;
  refs: number;
}

/**
 * Entries by layout, each list searched for equal image page-table entries. Comparing the bytes (a few
 * hundred at most for a small image) costs well under a microsecond; hashing them through the BLAKE3 binding
 * for a string key cost ~6 µs of every load.
 */
const entries = new Map<string, Entry[]>();
/** Unreferenced entries kept for reuse (a process that reloads the same file keeps its system area). */
const IDLE_MAX = 8;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Where {@linkcode systemAreaFor} reads a snapshot's memory: `read(offset, length)` at guest-physical
 * offsets, returning fewer bytes only at the end. A `Blob` reads from its files (no view mapped); a
 * `Mapping` reads through memory.
 *
 * @example
 * ```ts ignore
 * const reader: MemoryReader = blob; // or a Mapping
 * ```
 */
export interface MemoryReader {
  /** Copies `length` bytes at `offset` out. */
  read(offset: number, length: number): Uint8Array;
}

/**
 * The system area for a snapshot whose memory (guest-physical 0 and up) `memory` reads: its image
 * page-table entries (one read of `8 × image pages` bytes) are checked (`SnapshotFormatError` for anything
 * the ABI does not allow), everything else is rebuilt from the layout. Loaders pass the blob, which reads
 * those bytes with `pread`, so that loading maps no view of the file.
 *
 * @example
 * ```ts ignore
 * const system = systemAreaFor(blob, layout);
 * ```
 */
export function systemAreaFor(memory: MemoryReader, layout: Layout): SystemArea {
  const image = imagePageEntries(memory, layout);
  const key =
    `${layout.persistentSize}:${layout.heapBase}:${layout.scratchBase}:${layout.scratchSize}:${layout.ptPages}`;
  let list = entries.get(key);
  if (list === undefined) entries.set(key, list = []);
  // An area closed behind the cache's back (by a leak check) is forgotten, and built again when needed.
  for (let i = list.length - 1; i >= 0; i--) if (list[i].blob.closed) list.splice(i, 1);
  let entry = list.find((e) => sameBytes(e.image, image));
  if (entry === undefined) {
    entry = { image, blob: Blob.fromBytes(buildSystemArea(layout, image)), refs: 0 };
    list.push(entry);
  }
  entry.refs++;
  const held = entry;
  let released = false;
  return {
    blob: held.blob,
    release() {
      if (released) return;
      released = true;
      held.refs--;
      if (held.refs === 0) trim();
    },
  };
}

/** Every entry with the list it is in, oldest first within a layout. */
function* allEntries(): Generator<[Entry[], Entry]> {
  for (const list of entries.values()) for (const e of [...list]) yield [list, e];
}

/** Removes `e` from `list` (and an emptied list from the map) and closes its blob. */
function drop(list: Entry[], e: Entry): void {
  e.blob.close();
  list.splice(list.indexOf(e), 1);
  if (list.length === 0) {
    for (const [key, l] of entries) if (l === list) entries.delete(key);
  }
}

/** Closes unreferenced entries beyond the idle limit, oldest first. */
function trim(): void {
  let idle = 0;
  for (const [, e] of allEntries()) if (e.refs === 0) idle++;
  for (const [list, e] of allEntries()) {
    if (idle <= IDLE_MAX) break;
    if (e.refs !== 0) continue;
    drop(list, e);
    idle--;
  }
}

/**
 * Closes every system area no snapshot holds any more (the idle ones kept for reuse). For leak checks and
 * long-lived processes that want their file descriptors back.
 *
 * @example
 * ```ts
 * import { dropIdleSystemAreas } from "./system_image.ts";
 * dropIdleSystemAreas();
 * ```
 */
export function dropIdleSystemAreas(): void {
  for (const [list, e] of allEntries()) if (e.refs === 0) drop(list, e);
}
