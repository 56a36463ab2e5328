/**
 * Reading a snapshot file's prefix (never its blob) and describing it, for building and checking OCI
 * artifacts. Internal: shared by the config, the chain of a delta, and pull's layer checks.
 *
 * @module
 */

import { HEADER_FIELDS } from "../header.ts";
import { inspectSnapshot, type SnapshotInspection } from "../inspect.ts";
import { snapshotPrefixLength } from "../hls.ts";
import { Arch, Hypervisor } from "../tags.ts";
import { HEADER_OFFSET, HOST_FUNCS_OFFSET } from "../constants.ts";
import type { SnapshotConfig } from "./config.ts";

/** Builds the config from an inspection of the snapshot file and its length. */
function snapshotConfigFromInspection(info: SnapshotInspection, fileSize: number): SnapshotConfig {
  return {
    formatVersion: info.formatVersion,
    abiVersion: info.abiVersion,
    arch: info.arch,
    hypervisor: info.hypervisor,
    entrypoint: info.entrypoint,
    header: { ...info.header },
    sregs: info.sregs,
    hostFunctions: [...info.hostFunctions],
    headerHash: info.headerHash,
    blobHash: info.blobHash,
    fileSize,
  };
}

/** A snapshot file described from its prefix, and its length. */
export interface SnapshotFileInfo {
  /** Every check of `inspectSnapshot` passed on the prefix. */
  info: SnapshotInspection;
  /** The file's length in bytes. */
  size: number;
  /** Its OCI config. */
  config: SnapshotConfig;
}

/**
 * Reads a snapshot file's prefix and describes it. The file is judged against snapvm's own arch and
 * hypervisor with the file's ABI version, so an x86_64/KVM file gets snapvm's full layout checks whatever its
 * ABI, and a file of another arch or hypervisor is still accepted (a registry can hold snapshots for any
 * host).
 *
 * @throws {SnapshotFormatError} When the file is not a valid snapshot.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 */
export async function readSnapshotFileInfo(path: string | URL): Promise<SnapshotFileInfo> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const head = await readAt(file, Math.min(size, HOST_FUNCS_OFFSET));
  const prefix = head.byteLength < HOST_FUNCS_OFFSET ? head : await readAt(file, snapshotPrefixLength(head));
  const abiIndex = HEADER_FIELDS.findIndex(([name]) => name === "abi_version");
  const abiVersion = prefix.byteLength >= HOST_FUNCS_OFFSET
    ? Number(new DataView(prefix.buffer, prefix.byteOffset).getBigUint64(HEADER_OFFSET + 8 * abiIndex, true))
    : 0;
  const info = inspectSnapshot(prefix, size, { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion });
  return { info, size, config: snapshotConfigFromInspection(info, size) };
}

/** Reads up to `length` bytes from offset 0 (fewer only at end of file). */
async function readAt(file: Deno.FsFile, length: number): Promise<Uint8Array> {
  await file.seek(0, Deno.SeekMode.Start);
  const bytes = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(bytes.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return bytes.subarray(0, filled);
}
