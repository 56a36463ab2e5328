/**
 * The files of a snapshot to push or export: the file itself and, for a delta, its chain of bases, found the
 * way the loader finds them (the recorded file name next to the delta, or `resolveBase`) and checked the way
 * the loader checks them, from their prefixes only. Internal.
 *
 * @module
 */

import { SnapshotFormatError } from "../errors.ts";
import type { SnapshotInspection } from "../inspect.ts";
import type { SnapshotConfig } from "./config.ts";
import type { ArtifactOptions } from "./manifest.ts";
import { OciContentError } from "./errors.ts";
import { readSnapshotFileInfo } from "./_snapshot_file.ts";

/** Where a delta's base is: a path or `file:` URL, or `undefined` for the default (next to the delta). */
type ResolveBase = NonNullable<ArtifactOptions["resolveBase"]>;

/** One file of a chain. */
export interface ChainFile {
  /** Where it is. */
  path: string;
  /** Its config (header fields, hashes, length). */
  config: SnapshotConfig;
  /** Its BASE section, `null` for the complete file at the bottom. */
  base: SnapshotInspection["base"];
}

function pathOf(path: string | URL): string {
  if (path instanceof URL) {
    if (path.protocol !== "file:") throw new TypeError(`Must be a file URL, got ${path.protocol}`);
    return decodeURIComponent(path.pathname);
  }
  return path;
}

function nextTo(delta: string, name: string): string {
  const i = delta.lastIndexOf("/");
  return i < 0 ? name : `${delta.slice(0, i) || ""}/${name}`;
}

/**
 * The chain under `path`, bottom (the complete file) first, ending with `path` itself; a single entry for a
 * complete file. Each base must have the `blob_hash` its delta records, the same memory size, and a chain
 * depth one less (so a chain cannot loop and ends within `MAX_DELTA_CHAIN` files).
 *
 * @throws {SnapshotFormatError} `BaseNotFound` / `BaseMismatch`, or any check of a file's prefix.
 */
export async function resolveChain(path: string | URL, resolveBase?: ResolveBase): Promise<ChainFile[]> {
  const top = pathOf(path);
  const first = await readSnapshotFileInfo(top);
  const chain: ChainFile[] = [{ path: top, config: first.config, base: first.info.base }];
  for (let link = chain[0]; link.base !== null; link = chain[chain.length - 1]) {
    const ref = link.base;
    const resolved = resolveBase?.({
      blobHash: ref.blobHash,
      fileName: ref.fileName,
      chainDepth: ref.chainDepth,
      delta: link.path,
    });
    const basePath = resolved === undefined ? nextTo(link.path, ref.fileName) : pathOf(resolved);
    let file;
    try {
      file = await readSnapshotFileInfo(basePath);
    } catch (e) {
      if (
        e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory ||
        e instanceof Deno.errors.PermissionDenied
      ) {
        throw new SnapshotFormatError("BaseNotFound", {
          field: "base",
          found: `${basePath} (${e.message})`,
          expected: `the snapshot file with blob_hash ${ref.blobHash} that ${link.path} was written over`,
          hint: "keep a delta next to its base, or pass resolveBase to say where the base is",
        });
      }
      if (!(e instanceof SnapshotFormatError)) throw e;
      throw new SnapshotFormatError(e.kind, {
        field: e.field,
        found: e.found,
        expected: e.expected,
        hint: `in ${basePath}, the base of ${link.path}`,
      });
    }
    const mismatch = (field: string, found: string | number, expected: string): never => {
      throw new SnapshotFormatError("BaseMismatch", {
        field,
        found,
        expected,
        hint: `${basePath} is not the base ${link.path} was written over`,
      });
    };
    if (file.info.blobHash !== ref.blobHash) {
      mismatch("base.blob_hash", file.info.blobHash, `${ref.blobHash}, as ${link.path} records`);
    }
    if (file.config.header.memory_size !== link.config.header.memory_size) {
      mismatch(
        "memory_size",
        file.config.header.memory_size,
        `${link.config.header.memory_size}, the delta's`,
      );
    }
    const depth = file.info.base?.chainDepth ?? 0;
    if (depth !== ref.chainDepth - 1) {
      mismatch(
        "base.chain_depth",
        depth,
        `${ref.chainDepth - 1} (one less than the delta's ${ref.chainDepth})`,
      );
    }
    chain.push({ path: basePath, config: file.config, base: file.info.base });
  }
  chain.reverse();
  // Each base's name is recorded by the delta above it; the top's own name travels nowhere.
  checkDistinctNames(chain.map((_, i) => chain[i + 1]?.base?.fileName), `snapshot ${top}`);
  return chain;
}

/**
 * The file names of a chain's layers must differ: a puller puts the layers side by side under these names
 * (each base under the name the delta above it records), where the loader finds them.
 *
 * @param recorded For each layer bottom first, its file name (`undefined` where it has none).
 * @param what Names the snapshot in the error.
 * @throws {OciContentError} `InvalidField` naming the repeated file name.
 */
export function checkDistinctNames(recorded: readonly (string | undefined)[], what: string): void {
  const seen = new Set<string>();
  for (const [i, name] of recorded.entries()) {
    if (name === undefined) continue;
    if (seen.has(name)) {
      throw new OciContentError(
        "InvalidField",
        what,
        `layers[${i}] file name`,
        name,
        "a name no other layer of the chain records (layers are stored side by side under these names)",
      );
    }
    seen.add(name);
  }
}
