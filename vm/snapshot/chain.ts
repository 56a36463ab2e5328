/**
 * Finding and checking the chain of bases under a delta file: each base is looked for where the delta says
 * (its recorded file name next to the delta) or where the caller's `resolveBase` says, opened, its header
 * checked, and matched against what the delta records (`blob_hash`, memory size, chain depth). Everything
 * here reads hostile files: every failure is a typed `SnapshotFormatError`.
 *
 * @module
 */
import {
  type HostIdentity,
  MAX_DELTA_CHAIN,
  type ParsedSnapshot,
  parseSnapshotHeader,
  SnapshotFormatError,
} from "../../format/mod.ts";
import { toHex } from "../../format/_hex.ts";
import type { OpenedFile } from "../memory/os_memory.ts";
import type { SnapshotBaseReference } from "../../format/sections.ts";
import { dirname, openSnapshotFile, pathString, readPrefix } from "./file.ts";

export type { SnapshotBaseReference } from "../../format/sections.ts";

/** One file of a chain, top (the delta loaded) first. */
export interface ChainLink {
  /** The open file (the caller closes it, or turns it into a backing). */
  file: OpenedFile;
  /** Its checked header. */
  parsed: ParsedSnapshot;
  /** Where it was found. */
  path: string;
}

/** Where `inspectFile` reports each base. */
export interface ChainReport {
  path: string;
  blobHash: string;
  chainDepth: number;
  problem?: string;
}

/**
 * Checked headers of base files by identity (device, inode, mtime, size): a base shared by many deltas, or
 * loaded again and again, is read and checked once per process. A file rewritten in place gets a new mtime
 * and is read again.
 */
const parsedBases = new Map<string, ParsedSnapshot>();
const PARSED_BASES_MAX = 32;

function parseBase(file: OpenedFile, host: HostIdentity): ParsedSnapshot {
  const key = `${file.identity}:${file.size}:${host.abiVersion}:${host.hypervisor}`;
  let parsed = parsedBases.get(key);
  if (parsed === undefined) {
    parsed = parseSnapshotHeader(readPrefix(file), file.size, host);
    if (parsedBases.size >= PARSED_BASES_MAX) parsedBases.delete(parsedBases.keys().next().value!);
    parsedBases.set(key, parsed);
  }
  return parsed;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/**
 * Opens the chain of bases under `top` (whose header `parsed` is already checked). Returns every link, top
 * first, ending with the complete file. The caller owns `top`; on failure every base opened here is closed
 * again. `report` (for inspection) receives one entry per base looked for. `located` false says `top` has
 * no directory to look for its base in (it was given as bytes): its base must come from `resolveBase`.
 */
export function openChain(
  top: OpenedFile,
  parsed: ParsedSnapshot,
  path: string,
  host: HostIdentity,
  resolveBase?: (base: SnapshotBaseReference) => string | URL | undefined,
  report?: ChainReport[],
  located = true,
): ChainLink[] {
  const chain: ChainLink[] = [{ file: top, parsed, path }];
  const seen = new Set([top.identity]);
  try {
    for (let link = chain[0]; link.parsed.base !== null; link = chain[chain.length - 1]) {
      const ref = link.parsed.base;
      const resolved = resolveBase?.({
        blobHash: toHex(ref.blobHash),
        fileName: ref.fileName,
        chainDepth: ref.chainDepth,
        delta: link.path,
      });
      if (resolved === undefined && !located && link === chain[0]) {
        throw new SnapshotFormatError("BaseNotFound", {
          field: "base",
          found: `${ref.fileName}, named by a delta given as bytes (no directory to look in)`,
          expected: `the snapshot file with blob_hash ${toHex(ref.blobHash)}, from options.resolveBase`,
          hint: "pass resolveBase to say where the base is (or load a complete snapshot)",
        });
      }
      const basePath = resolved === undefined ? join(dirname(link.path), ref.fileName) : pathString(resolved);
      const entry: ChainReport | undefined = report === undefined
        ? undefined
        : { path: basePath, blobHash: toHex(ref.blobHash), chainDepth: ref.chainDepth - 1 };
      if (entry !== undefined) report!.push(entry);
      try {
        chain.push(openBase(basePath, link, seen, host));
      } catch (e) {
        if (e instanceof SnapshotFormatError && entry !== undefined) entry.problem = e.message;
        throw e;
      }
    }
    return chain;
  } catch (e) {
    for (const link of chain.slice(1)) link.file.close();
    throw e;
  }
}

function openBase(basePath: string, delta: ChainLink, seen: Set<string>, host: HostIdentity): ChainLink {
  const ref = delta.parsed.base!;
  const expectedHash = () => toHex(ref.blobHash); // only for messages
  let file: OpenedFile;
  try {
    file = openSnapshotFile(basePath);
  } catch (e) {
    if (
      !(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory ||
        e instanceof Deno.errors.PermissionDenied || e instanceof SnapshotFormatError)
    ) throw e;
    throw new SnapshotFormatError("BaseNotFound", {
      field: "base",
      found: `${basePath} (${e.message})`,
      expected: `the snapshot file with blob_hash ${expectedHash()} that ${delta.path} was written over`,
      hint: "keep a delta next to its base, or pass resolveBase to say where the base is",
    });
  }
  try {
    if (seen.has(file.identity)) {
      throw new SnapshotFormatError("BaseMismatch", {
        field: "base",
        found: `${basePath}, a file already in the chain`,
        expected: `a base with blob_hash ${expectedHash()} (the chain loops back on itself)`,
      });
    }
    seen.add(file.identity);
    let parsed: ParsedSnapshot;
    try {
      parsed = parseBase(file, host);
    } catch (e) {
      if (!(e instanceof SnapshotFormatError)) throw e;
      // Same kind and field, saying which file of the chain it is about.
      throw new SnapshotFormatError(e.kind, {
        field: e.field,
        found: e.found,
        expected: e.expected,
        hint: `in ${basePath}, the base of ${delta.path}`,
      });
    }
    const mismatch = (field: string, found: string | number, expected: string): never => {
      throw new SnapshotFormatError("BaseMismatch", {
        field,
        found,
        expected,
        hint: `${basePath} is not the base ${delta.path} was written over`,
      });
    };
    if (!sameBytes(parsed.blobHash, ref.blobHash)) {
      mismatch("base.blob_hash", toHex(parsed.blobHash), `${expectedHash()}, as ${delta.path} records`);
    }
    if (parsed.header.memorySize !== delta.parsed.header.memorySize) {
      mismatch("memory_size", parsed.header.memorySize, `${delta.parsed.header.memorySize}, the delta's`);
    }
    const depth = parsed.base?.chainDepth ?? 0;
    if (depth !== ref.chainDepth - 1) {
      mismatch(
        "base.chain_depth",
        depth,
        `${ref.chainDepth - 1} (one less than the delta's ${ref.chainDepth}, at most ${MAX_DELTA_CHAIN})`,
      );
    }
    return { file, parsed, path: basePath };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Reads bytes of the memory a chain describes (top first, as `openChain` returns it) from its files: each
 * page from the topmost delta that stores it, else from the complete file at the bottom. For the few bytes
 * a check needs before anything is mapped (inspection); short reads return fewer bytes.
 */
export function chainReader(
  chain: readonly ChainLink[],
): { read(offset: number, length: number): Uint8Array } {
  return {
    read(offset, length) {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const at = offset + done, page = Math.floor(at / 4096);
        const n = Math.min(length - done, (page + 1) * 4096 - at);
        let fileOffset: number | undefined;
        let link: ChainLink | undefined;
        for (const l of chain) {
          if (l.parsed.base === null) {
            fileOffset = l.parsed.header.memoryOffset + at;
            link = l;
            break;
          }
          let packed = 0;
          for (const r of l.parsed.base.runs) {
            if (page >= r.first && page < r.first + r.count) {
              fileOffset = l.parsed.header.memoryOffset + (packed + page - r.first) * 4096 + at % 4096;
              break;
            }
            packed += r.count;
          }
          if (fileOffset !== undefined) {
            link = l;
            break;
          }
        }
        const bytes = link!.file.read(fileOffset!, n);
        out.set(bytes, done);
        if (bytes.length < n) return out.subarray(0, done + bytes.length);
        done += n;
      }
      return out;
    },
  };
}
