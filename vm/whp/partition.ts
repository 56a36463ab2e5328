/**
 * A WHP partition handle, one thin method per WinHvPlatform call (the `kvm-ioctls` style: no policy here,
 * every failure a typed {@linkcode HresultError} naming the call). snapvm uses one virtual processor,
 * index 0.
 *
 * @module
 */
import { checkHresult, HresultError } from "../../ffi/windows/hresult.ts";
import {
  EXIT_CONTEXT,
  whp,
  WHV_CAPABILITY_CODE,
  WHV_PARTITION_PROPERTY_CODE,
} from "../../ffi/windows/winhvplatform.ts";
import { WhpUnsupportedWindowsError } from "./errors.ts";

/**
 * `WHvGetCapability(HypervisorPresent)`: true when the hypervisor runs and the API can be used.
 *
 * @example
 * ```ts ignore
 * import { hypervisorPresent } from "./partition.ts";
 * console.log(hypervisorPresent());
 * ```
 */
export function hypervisorPresent(): boolean {
  const out = new Uint8Array(8);
  const written = new Uint32Array(1);
  const hr = whp().WHvGetCapability(
    WHV_CAPABILITY_CODE.HypervisorPresent,
    out,
    8,
    new Uint8Array(written.buffer),
  );
  return hr >= 0 && new DataView(out.buffer).getUint32(0, true) !== 0;
}

/**
 * `WHvGetCapability(Features)`: the `WHV_CAPABILITY_FEATURES` bits (0n when the query fails).
 *
 * @example
 * ```ts ignore
 * import { capabilityFeatures } from "./partition.ts";
 * console.log(capabilityFeatures() & 8n); // DirtyPageTracking
 * ```
 */
export function capabilityFeatures(): bigint {
  const out = new BigUint64Array(1);
  const written = new Uint32Array(1);
  const hr = whp().WHvGetCapability(
    WHV_CAPABILITY_CODE.Features,
    new Uint8Array(out.buffer),
    8,
    new Uint8Array(written.buffer),
  );
  return hr >= 0 ? out[0] : 0n;
}

/**
 * `WHvCancelRunVirtualProcessor(partition, vp, 0)` on a handle given as a number (from any thread). The
 * caller must guarantee the partition is not deleted meanwhile (see `_control.ts`).
 *
 * @example
 * ```ts ignore
 * import { cancelRun } from "./partition.ts";
 * cancelRun(target.partition);
 * ```
 */
export function cancelRun(partition: bigint, vp = 0): number {
  return whp().WHvCancelRunVirtualProcessor(Deno.UnsafePointer.create(partition), vp, 0);
}

/**
 * One partition. Not thread-safe; `delete()` is final.
 *
 * @example
 * ```ts ignore
 * import { Partition } from "./partition.ts";
 * const p = Partition.create(1);
 * p.createVirtualProcessor(0);
 * p.delete();
 * ```
 */
export class Partition {
  #handle: Deno.PointerObject | null;
  /** The handle as a number (for interrupt targets). */
  readonly handleValue: bigint;

  private constructor(handle: Deno.PointerObject) {
    this.#handle = handle;
    this.handleValue = BigInt(Deno.UnsafePointer.value(handle));
  }

  /**
   * `WHvCreatePartition`, `WHvSetPartitionProperty(ProcessorCount)`, `WHvSetupPartition`. The partition
   * is deleted again if a later step fails.
   */
  static create(processorCount: number): Partition {
    const out = new BigUint64Array(1);
    checkHresult("WHvCreatePartition", whp().WHvCreatePartition(new Uint8Array(out.buffer)));
    const handle = Deno.UnsafePointer.create(out[0]);
    if (handle === null) throw new HresultError("WHvCreatePartition", 0x80004005);
    const p = new Partition(handle);
    try {
      const count = new Uint32Array([processorCount]);
      checkHresult(
        "WHvSetPartitionProperty(ProcessorCount)",
        whp().WHvSetPartitionProperty(
          handle,
          WHV_PARTITION_PROPERTY_CODE.ProcessorCount,
          new Uint8Array(count.buffer),
          4,
        ),
      );
      checkHresult("WHvSetupPartition", whp().WHvSetupPartition(handle));
      return p;
    } catch (e) {
      p.delete();
      throw e;
    }
  }

  #h(): Deno.PointerObject {
    if (this.#handle === null) throw new Error("WHP partition is deleted");
    return this.#handle;
  }

  /** `WHvCreateVirtualProcessor(partition, index, 0)`. */
  createVirtualProcessor(index: number): void {
    checkHresult("WHvCreateVirtualProcessor", whp().WHvCreateVirtualProcessor(this.#h(), index, 0));
  }

  /**
   * `WHvMapGpaRange`: maps `size` bytes of this process's memory at `host` to guest-physical `gpa`. The
   * first map of a partition is where Windows refuses a second partition in the same process
   * (`ERROR_VID_PARTITION_ALREADY_EXISTS`).
   */
  mapGpaRange(host: Deno.PointerObject, gpa: bigint, size: number, flags: number): void {
    checkHresult("WHvMapGpaRange", whp().WHvMapGpaRange(this.#h(), host, gpa, BigInt(size), flags));
  }

  /**
   * `WHvMapGpaRange2`: like {@linkcode mapGpaRange}, with memory of another process (a surrogate).
   * Throws {@linkcode WhpUnsupportedWindowsError} before Windows 11 / Server 2022.
   */
  mapGpaRange2(
    process: Deno.PointerObject,
    host: Deno.PointerObject,
    gpa: bigint,
    size: number,
    flags: number,
  ): void {
    const fn = whp().WHvMapGpaRange2;
    if (fn === null) throw new WhpUnsupportedWindowsError("WHvMapGpaRange2");
    checkHresult("WHvMapGpaRange2", fn(this.#h(), process, host, gpa, BigInt(size), flags));
  }

  /** `WHvUnmapGpaRange`. */
  unmapGpaRange(gpa: bigint, size: number): void {
    checkHresult("WHvUnmapGpaRange", whp().WHvUnmapGpaRange(this.#h(), gpa, BigInt(size)));
  }

  /** `WHvRunVirtualProcessor` into `context` (at least 224 bytes); the exit is decoded by `exit.ts`. */
  runVirtualProcessor(index: number, context: Uint8Array): void {
    checkHresult(
      "WHvRunVirtualProcessor",
      whp().WHvRunVirtualProcessor(this.#h(), index, context, EXIT_CONTEXT.SIZE),
    );
  }

  /**
   * `WHvGetVirtualProcessorRegisters`: `values` must be 16-byte aligned (see `aligned.ts`) and hold 16
   * bytes per name.
   */
  getRegisters(index: number, names: Uint32Array, values: Uint8Array): void {
    checkHresult(
      "WHvGetVirtualProcessorRegisters",
      whp().WHvGetVirtualProcessorRegisters(this.#h(), index, names, names.length, values),
    );
  }

  /** `WHvSetVirtualProcessorRegisters`, with the same alignment rule. */
  setRegisters(index: number, names: Uint32Array, values: Uint8Array): void {
    checkHresult(
      "WHvSetVirtualProcessorRegisters",
      whp().WHvSetVirtualProcessorRegisters(this.#h(), index, names, names.length, values),
    );
  }

  /**
   * `WHvGetVirtualProcessorXsaveState`: asks for the size first (`WHV_E_INSUFFICIENT_BUFFER` with the size
   * needed), then reads the state.
   */
  getXsaveState(index: number): Uint8Array {
    const written = new Uint32Array(1);
    const w = new Uint8Array(written.buffer);
    whp().WHvGetVirtualProcessorXsaveState(this.#h(), index, new Uint8Array(0), 0, w);
    const out = new Uint8Array(written[0]);
    checkHresult(
      "WHvGetVirtualProcessorXsaveState",
      whp().WHvGetVirtualProcessorXsaveState(this.#h(), index, out, out.length, w),
    );
    return out.subarray(0, written[0]);
  }

  /** `WHvSetVirtualProcessorXsaveState`. */
  setXsaveState(index: number, state: Uint8Array): void {
    checkHresult(
      "WHvSetVirtualProcessorXsaveState",
      whp().WHvSetVirtualProcessorXsaveState(this.#h(), index, state, state.length),
    );
  }

  /**
   * `WHvQueryGpaRangeDirtyBitmap`: fills `bitmap` (one bit per page of `[gpa, gpa + size)`) with the pages
   * written since the range was mapped with `TrackDirtyPages` or last queried, and clears them. A null
   * bitmap only clears.
   */
  queryDirtyBitmap(gpa: bigint, size: number, bitmap: BigUint64Array | null): void {
    const bytes = bitmap === null
      ? new Uint8Array(0)
      : new Uint8Array(bitmap.buffer, bitmap.byteOffset, bitmap.byteLength);
    checkHresult(
      "WHvQueryGpaRangeDirtyBitmap",
      whp().WHvQueryGpaRangeDirtyBitmap(this.#h(), gpa, BigInt(size), bytes, bytes.byteLength),
    );
  }

  /** `WHvDeletePartition` (with its virtual processors and mappings). Safe to call twice. */
  delete(): void {
    if (this.#handle === null) return;
    const h = this.#handle;
    this.#handle = null;
    checkHresult("WHvDeletePartition", whp().WHvDeletePartition(h));
  }

  /** True once deleted. */
  get deleted(): boolean {
    return this.#handle === null;
  }
}
