/**
 * Snapshot files on disk. Reading: open with Deno's own errors for bad paths, map regular files and read
 * anything else that can be read into sealed memory (bounded), read exactly the prefix the parser needs. Writing, atomically: temporary file in the target directory, fsync,
 * rename, fsync of the directory; stale temporary files of writers that died are removed after the next
 * successful write. Files are written sparse: pages of zeros are left as holes (they read back as zeros, so
 * the bytes, the hashes and the format are the same as a dense write).
 *
 * @module
 */
import {
  encodeSnapshotPrefix,
  type PageRun,
  type SnapshotPrefixInput,
  TRAILING_GUARD_SIZE,
} from "../../format/mod.ts";
import {
  FILE_PAGE_SIZE,
  HEADER_HASH_OFFSET,
  HLS_MAGIC,
  HOST_FUNCS_OFFSET,
  MAX_SNAPSHOT_FILE_SIZE,
} from "../../format/constants.ts";
import { SnapshotFormatError } from "../../format/errors.ts";
import { snapshotPrefixLength } from "../../format/hls.ts";
import { type Mapping, osMemory } from "../memory/mapping.ts";
import type { OpenedFile } from "../memory/os_memory.ts";
import { coalesce, intersect, nonZeroRuns } from "./_pages.ts";

const TMP_MARK = ".snapvm-tmp-";

function split(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  return i < 0 ? { dir: ".", base: path } : { dir: path.slice(0, i) || "/", base: path.slice(i + 1) };
}

/**
 * Zero gaps up to this many pages between data are written rather than skipped: one write instead of a seek
 * and another write, for at most 32 KiB of zeros on disk.
 */
const HOLE_MIN_PAGES = 8;

/** The blob bytes a file stores and what is known about them. */
export interface BlobSource {
  /** A view of the whole blob (the snapshot's memory). */
  view: Mapping;
  /** The pages the file stores, in order: every page for a complete file, a delta's runs for a delta. */
  stored: readonly PageRun[];
  /** Pages that may be non-zero (a superset); every other page is written as a hole without reading it. */
  data: readonly PageRun[];
  /** False writes every byte (no holes); default true. */
  sparse?: boolean;
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  // Large writes go in pieces: one write(2) moves at most ~2 GiB, and Deno may return short counts.
  const CHUNK = 64 * 1024 * 1024;
  for (let off = 0; off < bytes.length;) {
    off += file.writeSync(bytes.subarray(off, Math.min(bytes.length, off + CHUNK)));
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses to replace anything but a regular file (or nothing): renaming over a FIFO, socket or device node
 * would silently replace it (as root, `toFile("/dev/zero")` would replace the device).
 */
function refuseSpecialTarget(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (info.isSymlink) {
    try {
      info = Deno.statSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return; // a dangling link is replaced like a missing file
      throw e;
    }
  }
  if (info.isDirectory) {
    throw new Deno.errors.IsADirectory(`Is a directory (os error 21): rename to '${path}'`);
  }
  if (!info.isFile) throw notRegular(path, "save")();
}

/**
 * Writes the stored pages of `source` after the prefix, leaving zero pages as holes (sparse), and sets the
 * file's length to include the trailing guard (a hole too).
 */
function writeBlob(file: Deno.FsFile, at: number, source: BlobSource): number {
  const bytes = source.view.bytes;
  const sparse = source.sparse ?? true;
  let packed = 0;
  for (const run of source.stored) {
    const pieces = sparse
      ? coalesce(nonZeroRuns(source.view, intersect([run], source.data)), HOLE_MIN_PAGES)
      : [run];
    for (const piece of pieces) {
      file.seekSync(at + (packed + piece.first - run.first) * FILE_PAGE_SIZE, Deno.SeekMode.Start);
      writeAll(
        file,
        bytes.subarray(piece.first * FILE_PAGE_SIZE, (piece.first + piece.count) * FILE_PAGE_SIZE),
      );
    }
    packed += run.count;
  }
  const end = at + packed * FILE_PAGE_SIZE;
  if (sparse) file.truncateSync(end + TRAILING_GUARD_SIZE);
  else {
    file.seekSync(end, Deno.SeekMode.Start);
    writeAll(file, new Uint8Array(TRAILING_GUARD_SIZE));
  }
  return end + TRAILING_GUARD_SIZE;
}

/** Writes prefix ‖ stored blob pages ‖ 4096-byte zero guard to `path`, atomically. */
// deno-lint-ignore require-await
export async function writeSnapshotFile(
  target: string | URL,
  input: SnapshotPrefixInput,
  source: BlobSource,
): Promise<void> {
  const path = pathString(target);
  const prefix = encodeSnapshotPrefix(input);
  const { dir, base } = split(path);
  refuseSpecialTarget(path);
  const tmp = `${dir}/.${base}${TMP_MARK}${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o644 });
  try {
    writeAll(file, prefix);
    writeBlob(file, prefix.length, source);
    file.syncSync();
    file.close();
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    try {
      Deno.removeSync(tmp);
    } catch { /* never created or already renamed */ }
    throw e;
  }
  using d = Deno.openSync(dir, { read: true });
  d.syncSync();
  for (const entry of Deno.readDirSync(dir)) {
    const prefixName = `.${base}${TMP_MARK}`;
    if (!entry.name.startsWith(prefixName)) continue;
    const pid = Number(entry.name.slice(prefixName.length).split("-")[0]);
    if (!alive(pid)) {
      try {
        Deno.removeSync(`${dir}/${entry.name}`);
      } catch { /* another writer removed it */ }
    }
  }
}

const notRegular = (name: string, action: "load" | "save") => () =>
  new SnapshotFormatError("InvalidField", {
    field: "file type",
    found: name,
    expected: "a regular file",
    action,
  });

/** A path or `file:` URL as a path string. */
export function pathString(path: string | URL): string {
  if (path instanceof URL) {
    if (path.protocol !== "file:") throw new TypeError(`Must be a file URL, got ${path.protocol}`);
    return decodeURIComponent(path.pathname);
  }
  return path;
}

/** Whether bytes can start a snapshot file: its magic, or too few bytes to tell. */
function plausible(head: Uint8Array): boolean {
  return head.byteLength < 4 ||
    new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) === HLS_MAGIC;
}

function tooLarge(name: string) {
  return (found: string) =>
    new SnapshotFormatError("InvalidField", {
      field: "file size",
      found: `${found} (${name})`,
      expected: `at most ${MAX_SNAPSHOT_FILE_SIZE} bytes (MAX_SNAPSHOT_FILE_SIZE), the largest snapshot file`,
      hint: "a file that cannot be mapped is read into memory, and nothing larger is ever needed",
    });
}

/**
 * Opens a snapshot file read-only: Deno's own `NotFound` / `IsADirectory` / `PermissionDenied` for such
 * paths. A regular file is mapped where it is. Anything else that can be read (a FIFO or pipe, a device, a
 * file that reports no size, a file only Deno can open, as inside a `deno compile` executable) is read
 * whole into sealed memory first, at most `MAX_SNAPSHOT_FILE_SIZE` bytes (a `SnapshotFormatError`
 * `InvalidField` `file size` beyond), and then checked like any file: the same bytes, the same checks.
 * Opening never waits (a FIFO is opened non-blocking; one without a writer reads as empty). A socket is a
 * `SnapshotFormatError` `InvalidField` `file type`.
 */
export function openSnapshotFile(path: string | URL): OpenedFile {
  const name = pathString(path);
  return osMemory.openFile(name, {
    notRegular: notRegular(name, "load"),
    maxReadSize: MAX_SNAPSHOT_FILE_SIZE,
    tooLarge: tooLarge(name),
    plausible,
  });
}

let bytesSerial = 0;

/**
 * A snapshot file given as bytes (`Snapshot.fromBytes`), copied into sealed memory and opened like a file.
 * At most `MAX_SNAPSHOT_FILE_SIZE` bytes (`SnapshotFormatError` `InvalidField` `file size` beyond).
 */
export function openSnapshotBytes(bytes: Uint8Array): OpenedFile {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Snapshot.fromBytes takes a Uint8Array, got ${Object.prototype.toString.call(bytes)}`,
    );
  }
  if (bytes.byteLength > MAX_SNAPSHOT_FILE_SIZE) throw tooLarge("bytes")(`${bytes.byteLength} bytes`);
  return osMemory.openBytes(bytes, `bytes:${Deno.pid}:${++bytesSerial}`);
}

/**
 * Reads the prefix the parser needs (bounded by the file length and the format's limits): one read of the
 * first page, which holds the whole prefix of most files, then the rest if the host functions or sections
 * are larger.
 */
export function readPrefix(file: OpenedFile): Uint8Array {
  const first = file.read(0, Math.min(file.size, FILE_PAGE_SIZE));
  if (first.length < HOST_FUNCS_OFFSET) return first; // the parser reports Truncated
  const need = snapshotPrefixLength(first);
  return need <= first.length ? first : file.read(0, Math.min(need, file.size));
}

/** The directory part of a path (`.` for a bare name). */
export function dirname(path: string): string {
  return split(path).dir;
}

/** The file-name part of a path. */
export function basename(path: string): string {
  return split(path).base;
}

/** The 32 header-hash bytes of an open file, or undefined when it is too short. */
export function readHeaderHash(file: OpenedFile): Uint8Array | undefined {
  const h = file.read(HEADER_HASH_OFFSET, 32);
  return h.length === 32 ? h : undefined;
}
