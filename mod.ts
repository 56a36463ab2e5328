/**
 * snapvm: run untrusted guest code in hardware-isolated KVM micro-VMs from Deno.
 *
 * @example
 * ```ts ignore
 * import { UninitializedSandbox } from "@snapvm/snapvm";
 * const u = new UninitializedSandbox("./guest/bin/testguest");
 * u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
 * using sbx = u.evolve();
 * console.log(sbx.call("Echo", "hello")); // "hello"
 * ```
 *
 * @module
 */
export { UninitializedSandbox } from "./vm/uninitialized_sandbox.ts";
export type { GuestBinary } from "./vm/uninitialized_sandbox.ts";
export { MultiUseSandbox } from "./vm/multi_use_sandbox.ts";
export { Snapshot } from "./vm/snapshot.ts";
export type {
  SnapshotBaseReference,
  SnapshotFileInspection,
  SnapshotLoadOptions,
  SnapshotPullOptions,
  SnapshotPushOptions,
  SnapshotPushResult,
  SnapshotToFileOptions,
} from "./vm/snapshot.ts";
export type {
  ArtifactOptions,
  OciDescriptor,
  OciManifest,
  PullOptions,
  PullProgress,
  PushedBlob,
  PushOptions,
  PushProgress,
  PushResult,
  RegistryCredentials,
  RegistryOptions,
  SnapshotConfig,
} from "./format/oci/mod.ts";
export {
  DigestMismatchError,
  InsecureRegistryError,
  OciCacheError,
  OciContentError,
  OciLayoutError,
  OciReferenceError,
  RegistryAuthError,
  RegistryConnectionError,
  RegistryError,
} from "./format/oci/errors.ts";
export { OCI_CONTENT_ERROR_KINDS } from "./format/oci/errors.ts";
export type { OciContentErrorKind, RegistryErrorCode } from "./format/oci/errors.ts";
export { OCI_MANIFEST_MEDIA_TYPE } from "./format/oci/constants.ts";
export { SNAPSHOT_FORMAT_ERROR_KINDS, SnapshotFormatError } from "./format/errors.ts";
export { MAX_SNAPSHOT_FILE_SIZE } from "./format/constants.ts";
export type { SnapshotFormatErrorKind } from "./format/errors.ts";
export type { Incompatibility, SnapshotInspection } from "./format/inspect.ts";
export type { HeaderFieldName } from "./format/header.ts";
export { OsCallError, ResourceExhaustedError, SnapvmError } from "./errors.ts";
export { blake3Backend, blake3Info } from "./format/blake3.ts";
export type { Blake3Backend, Blake3Info } from "./format/blake3.ts";
export { HostFunctions } from "./vm/host_functions.ts";
export type { HostFunction, HostFunctionEntry } from "./vm/host_functions.ts";
export { InterruptHandle } from "./vm/interrupt_handle.ts";
export type { BackendName, InterruptTarget } from "./vm/backend/backend.ts";
export { CONFIG_LIMITS } from "./vm/config.ts";
export type { HotOptions, LogLevel, ResolvedConfiguration, SandboxConfiguration } from "./vm/config.ts";
export { setLogger } from "./vm/logger.ts";
export type { Logger, LogRecord } from "./vm/logger.ts";
export type { GuestFunctionInfo, ReturnType, Signature, Value, ValueType } from "./vm/types.ts";
export { ABI_VERSION } from "./vm/machine/abi.ts";
export { WhpPartitionLimitError, WhpUnavailableError, WhpUnsupportedWindowsError } from "./vm/whp/errors.ts";
export type { WhpUnavailableReason } from "./vm/whp/errors.ts";
export { CoreDumpError, DebuggerConnectionError, GuestAddressError } from "./vm/debug/errors.ts";
export type { GuestAddressProblem } from "./vm/debug/errors.ts";
export {
  ExecutionCanceledError,
  GuestAbortedError,
  GuestBinaryError,
  GuestCrashedError,
  GuestError,
  GuestFunctionNotFoundError,
  HostFunctionError,
  HostFunctionMismatchError,
  HypervisorUnavailableError,
  MemoryAccessViolationError,
  PoisonedSandboxError,
  SandboxBusyError,
  SandboxClosedError,
  SnapshotSandboxMismatchError,
} from "./vm/errors.ts";
