/**
 * Reading a snapshot file into sealed memory when it cannot be mapped: a FIFO or pipe, a character device,
 * a file system whose files report no size (procfs), or a file only Deno can open (the virtual file system
 * of a `deno compile` executable). Platform-neutral: the platforms supply where the bytes go (a memfd, a
 * pagefile-backed section) and how to read them. Chunks of zeros are never written, so the copy of a sparse
 * file takes memory only for its data.
 *
 * @module
 */

/** How `OsMemory.openFile` treats paths it cannot map, and the limit on reading them. */
export interface OpenRules {
  /** The error for a path that is neither a file nor readable as one (a socket). */
  notRegular(): Error;
  /** Largest file read into memory, in bytes. */
  readonly maxReadSize: number;
  /** The error for a file larger than `maxReadSize`; `found` says how much there was. */
  tooLarge(found: string): Error;
  /**
   * Whether a file starting with these bytes (at least 4, or the whole file) may be what is being loaded;
   * when not, reading stops there (the loader then refuses the bytes read, e.g. for their magic).
   */
  plausible(head: Uint8Array): boolean;
}

/** Where the bytes of a file being read go. */
export interface Sink {
  /** Stores `bytes` at `offset` (never called for a chunk of zeros: it reads as zeros anyway). */
  write(offset: number, bytes: Uint8Array): void;
}

/** Bytes read (and checked for zeros) at a time. */
export const READ_CHUNK = 1024 * 1024;

/** Whether `bytes` are all zero (a word at a time; exits at the first non-zero word). */
export function isZero(bytes: Uint8Array): boolean {
  const words = bytes.byteOffset % 4 === 0 ? Math.floor(bytes.byteLength / 4) : 0;
  if (words > 0) {
    const w = new Int32Array(bytes.buffer, bytes.byteOffset, words);
    for (let i = 0; i < words; i++) if (w[i] !== 0) return false;
  }
  for (let i = words * 4; i < bytes.byteLength; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Reads a stream to its end into `sink`, a chunk at a time: `read(into)` returns the bytes it placed at the
 * start of `into`, 0 at the end. `knownSize`, when the source reports one, is checked against the limit
 * before anything is read. Returns the number of bytes read.
 */
export function readStream(
  read: (into: Uint8Array) => number,
  sink: Sink,
  rules: OpenRules,
  isZeroChunk: (bytes: Uint8Array) => boolean = isZero,
  knownSize?: number,
): number {
  if (knownSize !== undefined && knownSize > rules.maxReadSize) {
    throw rules.tooLarge(`${knownSize} bytes`);
  }
  const chunk = new Uint8Array(READ_CHUNK);
  let size = 0;
  for (;;) {
    let n = 0, end = false;
    while (n < chunk.length) {
      const got = read(chunk.subarray(n));
      if (got === 0) {
        end = true;
        break;
      }
      n += got;
      // Not a snapshot (its first bytes say so): stop, whatever follows (/dev/zero never ends).
      if (size === 0 && n >= 4 && n - got < 4 && !rules.plausible(chunk.subarray(0, n))) {
        end = true;
        break;
      }
    }
    if (size + n > rules.maxReadSize) throw rules.tooLarge(`more than ${rules.maxReadSize} bytes`);
    if (n > 0 && !isZeroChunk(chunk.subarray(0, n))) sink.write(size, chunk.subarray(0, n));
    size += n;
    if (end) return size;
  }
}

/**
 * Reads a file Deno can open but the platform's own calls cannot (the virtual file system inside a
 * `deno compile` executable) into `sink`. Returns its size and an identity for caches. Deno's own
 * `NotFound`, `IsADirectory` and `PermissionDenied` reach the caller.
 */
export function readThroughDeno(
  path: string,
  sink: Sink,
  rules: OpenRules,
  isZeroChunk?: (bytes: Uint8Array) => boolean,
): { size: number; identity: string } {
  const info = Deno.statSync(path);
  if (info.isDirectory) throw new Deno.errors.IsADirectory(`Is a directory: open '${path}'`);
  if (!info.isFile) throw rules.notRegular();
  using file = Deno.openSync(path, { read: true });
  const size = readStream((into) => file.readSync(into) ?? 0, sink, rules, isZeroChunk, info.size);
  const identity = `deno:${info.dev}:${info.ino ?? path}:${info.mtime?.getTime() ?? 0}:${size}`;
  return { size, identity };
}
