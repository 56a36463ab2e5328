/**
 * Snapshot files on disk. Reading: open with Deno's own errors for bad paths, refuse non-regular files, read
 * exactly the prefix the parser needs. Writing, atomically: temporary file in the target directory, fsync,
 * rename, fsync of the directory; stale temporary files of writers that died are removed after the next
 * successful write.
 *
 * @module
 */
import { encodeSnapshotPrefix, type SnapshotPrefixInput, TRAILING_GUARD_SIZE } from "../../format/mod.ts";
import { HEADER_HASH_OFFSET, HOST_FUNCS_OFFSET } from "../../format/constants.ts";
import { SnapshotFormatError } from "../../format/errors.ts";
import { snapshotPrefixLength } from "../../format/hls.ts";
import { lastErrno, OsCallError } from "../../ffi/linux/errno.ts";
import { libc, O_CLOEXEC, O_NONBLOCK, O_RDONLY } from "../../ffi/linux/libc.ts";

const TMP_MARK = ".snapvm-tmp-";

function split(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  return i < 0 ? { dir: ".", base: path } : { dir: path.slice(0, i) || "/", base: path.slice(i + 1) };
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

/** Writes prefix ‖ blob ‖ 4096-byte zero guard to `path`, atomically. */
// deno-lint-ignore require-await
export async function writeSnapshotFile(
  target: string | URL,
  input: SnapshotPrefixInput,
  blob: Uint8Array,
): Promise<void> {
  const path = target instanceof URL ? decodeURIComponent(target.pathname) : target;
  const prefix = encodeSnapshotPrefix(input);
  const { dir, base } = split(path);
  const tmp = `${dir}/.${base}${TMP_MARK}${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o644 });
  try {
    writeAll(file, prefix);
    writeAll(file, blob);
    writeAll(file, new Uint8Array(TRAILING_GUARD_SIZE));
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

/** An open snapshot file. */
export interface OpenFile {
  fd: number;
  size: number;
}

const encoder = new TextEncoder();

function pathString(path: string | URL): string {
  return path instanceof URL ? decodeURIComponent(path.pathname) : path;
}

/** Opens a snapshot file read-only; Deno's own errors for a missing path or a directory. */
export function openFile(path: string | URL): OpenFile {
  // Deno's own errors for a missing, unreadable or wrong kind of path, as users of Deno.readFile expect.
  const info = Deno.statSync(path);
  const name = pathString(path);
  if (info.isDirectory) throw new Deno.errors.IsADirectory(`Is a directory (os error 21): open '${name}'`);
  if (!info.isFile) {
    throw new SnapshotFormatError("InvalidField", {
      field: "file type",
      found: name,
      expected: "a regular file",
    });
  }
  // O_NONBLOCK: a path swapped for a FIFO after the check must not block the open.
  const fd = libc().open(encoder.encode(name + "\0"), O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0) throw new OsCallError(`open(${name})`, lastErrno());
  const st = new BigUint64Array(18); // struct stat, 144 B: st_mode u32 at 24, st_size at 48
  const statOk = libc().fstat(fd, new Uint8Array(st.buffer)) >= 0;
  const errno = statOk ? 0 : lastErrno();
  if (!statOk || (st[3] & 0xf000n) !== 0x8000n) {
    libc().close(fd);
    if (!statOk) throw new OsCallError("fstat", errno);
    throw new SnapshotFormatError("InvalidField", {
      field: "file type",
      found: name,
      expected: "a regular file",
    });
  }
  return { fd, size: Number(st[6]) };
}

function pread(fd: number, length: number, offset: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = Number(libc().pread(fd, out.subarray(done), BigInt(length - done), BigInt(offset + done)));
    if (n < 0) throw new OsCallError("pread", lastErrno());
    if (n === 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

/** Reads exactly the prefix the parser needs (bounded by the file length and the format's limits). */
export function readPrefix(fd: number, fileSize: number): Uint8Array {
  const first = pread(fd, Math.min(fileSize, HOST_FUNCS_OFFSET), 0);
  if (first.length < HOST_FUNCS_OFFSET) return first; // the parser reports Truncated
  const need = snapshotPrefixLength(first);
  return need <= first.length ? first : pread(fd, Math.min(need, fileSize), 0);
}

/** Device, inode, size and mtime (ns) of a path, for the load cache. */
export function statPath(path: string | URL): { dev: bigint; ino: bigint; size: number; mtime: string } {
  const f = openFile(path);
  try {
    const st = new BigUint64Array(18);
    libc().fstat(f.fd, new Uint8Array(st.buffer));
    return { dev: st[0], ino: st[1], size: Number(st[6]), mtime: `${st[11]}.${st[12]}` };
  } finally {
    libc().close(f.fd);
  }
}

/** The 32 header-hash bytes of a file, or undefined when it is too short. */
export function readHeaderHash(path: string | URL): Uint8Array | undefined {
  const f = openFile(path);
  try {
    const h = pread(f.fd, 32, HEADER_HASH_OFFSET);
    return h.length === 32 ? h : undefined;
  } finally {
    libc().close(f.fd);
  }
}
