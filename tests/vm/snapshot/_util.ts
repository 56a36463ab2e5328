/**
 * Shared helpers of the snapshot tests (tests/snapshot_*_test.ts): the test guest with its host functions,
 * temporary directories, the byte layout of `.hls` files (pinned here from docs/FORMAT.md, not
 * imported from the codec, so that a change to the codec cannot silently move the tests along with it), and
 * process resource counts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dropIdleSystemAreas } from "../../../vm/machine/system_image.ts";
import {
  HostFunctions,
  type SandboxConfiguration,
  type SnapshotFormatErrorKind,
  UninitializedSandbox,
} from "../../../mod.ts";
// Only to forge files with a consistent header_hash (corruption tests); never to check the library.
import { blake3 } from "../../../format/blake3.ts";
import { guestPath } from "../../_hypervisor.ts";

/** The test guest binary. */
export const TESTGUEST: string = guestPath("testguest");

/** Signature of the test guest's `Add` host function. */
export const ADD_SIG = { params: ["i32", "i32"], returns: "i32" } as const;

/** `HostPrint` plus `Add` (a + b): what the test guest needs. */
export function hostFns(): HostFunctions {
  return new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
}

/** An UninitializedSandbox of the test guest with `Add` registered (unless other host functions are given). */
export function testguest(
  config?: SandboxConfiguration,
  fns: HostFunctions = hostFns(),
): UninitializedSandbox {
  return new UninitializedSandbox(TESTGUEST, config, fns);
}

/** Runs `fn` with a fresh temporary directory that is removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-snapshot-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** SHA-256 of a file's contents, as hex (an independent hash, not the library's BLAKE3). */
export async function fileDigest(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Open file descriptors and mappings of this process. */
export function counts(): { fds: number; maps: number } {
  return {
    fds: (dropIdleSystemAreas(), [...Deno.readDirSync("/proc/self/fd")].length),
    maps: Deno.readTextFileSync("/proc/self/maps").split("\n").length,
  };
}

/** Lines of /proc/self/maps that map a file whose path contains `text` (deleted files included). */
export function mappingsOf(text: string): string[] {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.includes(text));
}

// ---- The .hls byte layout (docs/FORMAT.md), pinned ----------------------------------------------------------

/** File offsets of the sections. */
export const OFF = {
  magic: 0,
  formatVersion: 4,
  header: 8,
  sregs: 160,
  headerHash: 1112,
  blobHash: 1144,
  hostFuncs: 1176,
} as const;

/** The 19 header fields in file order. */
export const HEADER_FIELDS = [
  "arch",
  "abi_version",
  "stack_top_gva",
  "entrypoint_tag",
  "entrypoint_addr",
  "input_data_size",
  "output_data_size",
  "heap_size",
  "code_size",
  "init_data_size",
  "init_data_permissions",
  "scratch_size",
  "snapshot_size",
  "pt_size",
  "memory_size",
  "memory_offset",
  "has_sregs",
  "hypervisor",
  "host_funcs_size",
] as const;

/** One header field name. */
export type HeaderField = typeof HEADER_FIELDS[number];

/** File offset of a header field. */
export function fieldOffset(name: HeaderField): number {
  return OFF.header + 8 * HEADER_FIELDS.indexOf(name);
}

/** Reads a header field. */
export function getField(bytes: Uint8Array, name: HeaderField): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(fieldOffset(name), true);
}

/** Writes a header field (in place). */
export function setField(bytes: Uint8Array, name: HeaderField, value: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(fieldOffset(name), value, true);
}

/** Reads / writes a u64 at a file offset. */
export function getU64(bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(offset, true);
}

/** Writes a u64 at a file offset (in place). */
export function setU64(bytes: Uint8Array, offset: number, value: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(offset, value, true);
}

/** File offset of a special-register u64: segment registers (13 × u64 each), then gdt, idt, control regs. */
export function sregOffset(
  reg: "cs" | "ds" | "es" | "fs" | "gs" | "ss" | "tr" | "ldt",
  field:
    | "base"
    | "limit"
    | "selector"
    | "type"
    | "present"
    | "dpl"
    | "db"
    | "s"
    | "l"
    | "g"
    | "avl"
    | "unusable",
): number {
  const segs = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"];
  const fields = [
    "base",
    "limit",
    "selector",
    "type",
    "present",
    "dpl",
    "db",
    "s",
    "l",
    "g",
    "avl",
    "unusable",
  ];
  return OFF.sregs + 8 * (13 * segs.indexOf(reg) + fields.indexOf(field));
}

/** File offset of a control register in the sregs (after 8 segments and gdt/idt). */
export function crOffset(reg: "cr0" | "cr2" | "cr3" | "cr4" | "cr8" | "efer" | "apic_base"): number {
  const regs = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"];
  return OFF.sregs + 8 * (13 * 8 + 4 + regs.indexOf(reg));
}

/**
 * Recomputes header_hash (in place) so that a forged change gets past the header_hash check. In a version-2
 * file the hash also covers the section table (`u32 count`, `u32 sections_size`, then that many bytes).
 */
export function rehashHeader(bytes: Uint8Array): void {
  let end = OFF.hostFuncs + Number(getField(bytes, "host_funcs_size"));
  if (bytes[OFF.formatVersion] === 2) {
    end += 8 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(end + 4, true);
  }
  const message = new Uint8Array(end - 32);
  message.set(bytes.subarray(0, OFF.headerHash), 0);
  message.set(bytes.subarray(OFF.blobHash, end), OFF.headerHash);
  bytes.set(blake3(message), OFF.headerHash);
}

/** Recomputes blob_hash (in place) over the blob, then header_hash. */
export function rehashAll(bytes: Uint8Array): void {
  const off = Number(getField(bytes, "memory_offset")), size = Number(getField(bytes, "memory_size"));
  bytes.set(blake3(bytes.subarray(off, off + size)), OFF.blobHash);
  rehashHeader(bytes);
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Asserts that `fn` throws a SnapshotFormatError of `kind` (and, if given, about `field`); returns it. */
export function assertFormatError(
  fn: () => unknown,
  kind: SnapshotFormatErrorKind,
  field?: string,
  what = "",
): Error & { kind: string; field: string; found: unknown; expected: string } {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${what}: expected SnapshotFormatError ${kind}, but it loaded`);
  const e = caught as Error & { kind: string; field: string; found: unknown; expected: string };
  assert.equal(e.name, "SnapshotFormatError", `${what}: got ${e.name}: ${e.message}`);
  assert.equal(e.kind, kind, `${what}: ${e.message}`);
  if (field !== undefined) assert.equal(e.field, field, `${what}: ${e.message}`);
  // The message names the field, the value found and what was expected.
  assert.match(e.message, /^Cannot load snapshot: /, what);
  const shown = e.field.startsWith("sregs.") ? e.field.slice("sregs.".length) : e.field;
  assert.ok(e.message.includes(shown), `${what}: message does not name the field: ${e.message}`);
  assert.ok(e.message.includes(`is ${e.found}`), `${what}: message does not give the value: ${e.message}`);
  assert.ok(e.expected.length > 0 && e.message.includes(`expected ${e.expected}`), `${what}: ${e.message}`);
  return e;
}
