/**
 * Atomic writing of snapshot files: temporary file in the target directory, fsync, rename, fsync of the
 * directory. Stale temporary files of writers that died are removed after the next successful write.
 *
 * @module
 */
import { encodeSnapshotPrefix, type SnapshotPrefixInput, TRAILING_GUARD_SIZE } from "../format/mod.ts";

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
