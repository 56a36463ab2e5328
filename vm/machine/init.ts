/**
 * Guest initialisation (docs/ABI.md, "Entry"): boot record, first run, init result, function table.
 * Shared by `evolve`, `fromSnapshot` and `restore` of Initialise snapshots.
 *
 * @module
 */
import { ABI_VERSION, BOOT_MAGIC, IMAGE_BASE, LOG_LEVELS, STATUS_OK } from "./abi.ts";
import { ProtocolError } from "./codec.ts";
import { readFunctionList } from "./functions.ts";
import type { GuestVm } from "./guest_vm.ts";
import type { ResolvedConfiguration } from "../config.ts";
import { GuestCrashedError, GuestError } from "../errors.ts";
import type { HostFunctions } from "../host_functions.ts";
import type { GuestFunctionInfo } from "../types.ts";

/** What init reports. */
export interface InitResult {
  /** Address of the guest's dispatch loop (the Call entry point). */
  readonly dispatch: bigint;
  /** The guest's functions. */
  readonly functions: ReadonlyMap<string, GuestFunctionInfo>;
}

/** Runs guest init from `entry` on a fresh VM; throws (without closing the VM) on failure. */
export function initialise(
  vm: GuestVm,
  entry: bigint,
  config: ResolvedConfiguration,
  hostFunctions: HostFunctions,
): InitResult {
  const l = vm.layout;
  const v = new DataView(vm.input.buffer, vm.input.byteOffset, 72);
  v.setUint32(0, BOOT_MAGIC, true);
  v.setUint32(4, ABI_VERSION, true);
  v.setBigUint64(8, BigInt(l.heapBase), true);
  v.setBigUint64(16, BigInt(l.heapSize), true);
  v.setBigUint64(24, BigInt(l.inputBase), true);
  v.setBigUint64(32, BigInt(l.inputSize), true);
  v.setBigUint64(40, BigInt(l.outputBase), true);
  v.setBigUint64(48, BigInt(l.outputSize), true);
  v.setUint32(56, LOG_LEVELS.indexOf(config.guestLogLevel), true);
  v.setUint32(60, 0, true);
  v.setBigUint64(64, config.guestInitArg, true);
  vm.hostWroteInput(72);
  vm.enterAt(entry, BigInt(l.inputBase));
  vm.run({ functionName: "<init>", hostFunctions, maxExecutionTimeMs: config.maxExecutionTimeMs });
  const r = vm.outputReader();
  try {
    const status = r.u32("init status");
    if (status !== STATUS_OK) {
      const code = r.u32("init error code");
      throw new GuestError("<init>", code, r.string("init error message"));
    }
    const dispatch = r.u64("dispatch address");
    if (dispatch < BigInt(IMAGE_BASE) || dispatch >= BigInt(l.imageEnd)) {
      throw new ProtocolError(`dispatch address 0x${dispatch.toString(16)} is outside the guest image`);
    }
    const start = r.pos;
    const functions = readFunctionList(r);
    vm.writeFunctionTable(r.bytes.subarray(start, r.pos));
    return { dispatch, functions };
  } catch (e) {
    if (e instanceof ProtocolError) {
      throw new GuestCrashedError(`protocol error in init result: ${e.message}`);
    }
    throw e;
  }
}
