/**
 * The header fixture of the codec tests, and their check of a refusal: a layout that follows docs/ABI.md. Image 0x200000..0x205432
 * (code_size 0x5432), heap 0x206000..0x216000: blob = guest memory 0..0x216000. Stack guard
 * 0x216000..0x217000; scratch 0x217000..0x221000 = stack 0x8000, input 0x1000, output 0x1000.
 */
import { MEMORY_MAP } from "../../vm/machine/abi.ts";
import assert from "node:assert/strict";
import {
  Arch,
  EntrypointTag,
  type HostIdentity,
  Hypervisor,
  SnapshotFormatError,
  type SnapshotFormatErrorKind,
  type SnapshotHeaderFields,
} from "../../format/mod.ts";

/** The host the fixture's files are made for. */
export const HOST: HostIdentity = {
  arch: Arch.X86_64,
  hypervisor: Hypervisor.KVM,
  abiVersion: 1,
  memoryMap: MEMORY_MAP,
};

/** The fixture's memory blob size. */
export const MEMORY_SIZE = 0x216000;

/** The fixture's header fields, with `overrides`. */
export function fields(overrides: Partial<SnapshotHeaderFields> = {}): SnapshotHeaderFields {
  return {
    arch: Arch.X86_64,
    abiVersion: 1,
    stackTopGva: 0x21f000,
    entrypointTag: EntrypointTag.Initialise,
    entrypointAddr: 0x200123,
    inputDataSize: 0x1000,
    outputDataSize: 0x1000,
    heapSize: 0x10000,
    codeSize: 0x5432,
    initDataSize: 0,
    initDataPermissions: 0,
    scratchSize: 0xa000,
    snapshotSize: MEMORY_SIZE,
    ptSize: 0x5000,
    memorySize: MEMORY_SIZE,
    hypervisor: Hypervisor.KVM,
    ...overrides,
  };
}

/**
 * Runs `run`, which must throw a `SnapshotFormatError` of `kind` (and `field`, and a message holding
 * `messagePart`), and returns the error.
 */
export function expectError(
  run: () => unknown,
  kind: SnapshotFormatErrorKind,
  field?: string,
  messagePart?: string | RegExp,
): SnapshotFormatError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SnapshotFormatError, `expected a SnapshotFormatError, got ${caught}`);
  assert.equal(caught.name, "SnapshotFormatError");
  assert.equal(caught.kind, kind, caught.message);
  if (field !== undefined) assert.equal(caught.field, field, caught.message);
  if (typeof messagePart === "string") assert.ok(caught.message.includes(messagePart), caught.message);
  if (messagePart instanceof RegExp) assert.match(caught.message, messagePart);
  return caught;
}
