/**
 * A guest binary and its configuration, before the VM exists.
 *
 * @module
 */
import { ABI_VERSION, BOOT_MAGIC, IMAGE_BASE, LOG_LEVELS, STATUS_OK } from "./_abi.ts";
import { MADV_POPULATE_WRITE } from "../ffi/libc.ts";
import { GuestVm } from "./_guest_vm.ts";
import { ProtocolError } from "./_codec.ts";
import { writeSystemArea } from "./_system.ts";
import { readFunctionList } from "./_functions.ts";
import { resolveConfiguration, type ResolvedConfiguration, type SandboxConfiguration } from "./config.ts";
import { type ElfImage, parseElf, PF_X } from "./elf.ts";
import { GuestCrashedError, GuestError } from "./errors.ts";
import { type HostFunction, HostFunctions } from "./host_functions.ts";
import { computeLayout, type Layout } from "./layout.ts";
import { Mapping } from "./mapping.ts";
import { MultiUseSandbox } from "./multi_use_sandbox.ts";
import type { Signature } from "./types.ts";

/**
 * A guest binary: a file path, a `file:` URL, or the ELF bytes.
 *
 * @example
 * ```ts
 * import type { GuestBinary } from "./uninitialized_sandbox.ts";
 * const g: GuestBinary = "./guest/bin/testguest";
 * ```
 */
export type GuestBinary = string | URL | Uint8Array;

/**
 * A sandbox that has not started yet: holds the validated guest binary, the configuration and the host
 * functions. `evolve()` creates the micro-VM and runs guest initialisation.
 *
 * @example
 * ```ts ignore
 * import { UninitializedSandbox } from "./uninitialized_sandbox.ts";
 * const u = new UninitializedSandbox("./guest/bin/testguest");
 * u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
 * using sbx = u.evolve();
 * console.log(sbx.call("Echo", "hello"));
 * ```
 */
export class UninitializedSandbox {
  readonly #image: Uint8Array;
  readonly #elf: ElfImage;
  readonly #config: ResolvedConfiguration;
  readonly #layout: Layout;
  #hostFunctions: HostFunctions;

  /**
   * Reads and validates the guest binary and the configuration. Throws `GuestBinaryError` for a bad ELF,
   * TypeError/RangeError for a bad configuration, and Deno's own errors (such as `Deno.errors.NotFound`)
   * when the file cannot be read.
   */
  constructor(guest: GuestBinary, config?: SandboxConfiguration, hostFunctions?: HostFunctions) {
    this.#image = guest instanceof Uint8Array ? guest.slice() : Deno.readFileSync(guest);
    this.#elf = parseElf(this.#image);
    this.#config = resolveConfiguration(config);
    this.#layout = computeLayout({
      imageEnd: this.#elf.end,
      heapSize: this.#config.heapSize,
      stackSize: this.#config.stackSize,
      inputDataSize: this.#config.inputDataSize,
      outputDataSize: this.#config.outputDataSize,
    });
    this.#hostFunctions = hostFunctions?.clone() ?? new HostFunctions();
  }

  /** The resolved configuration (every field present). */
  get config(): ResolvedConfiguration {
    return this.#config;
  }

  /** The host functions the guest will be able to call. */
  get hostFunctions(): HostFunctions {
    return this.#hostFunctions;
  }

  /**
   * Registers a host function the guest can call by name. Returns `this`.
   *
   * @example
   * ```ts ignore
   * u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
   * ```
   */
  registerHostFunction(name: string, signature: Signature, fn: HostFunction): this {
    this.#hostFunctions.register(name, signature, fn);
    return this;
  }

  /**
   * Replaces the default `HostPrint` (which writes to stdout). Returns `this`.
   *
   * @example
   * ```ts ignore
   * u.registerPrint((text) => console.log("guest:", text));
   * ```
   */
  registerPrint(fn: (text: string) => void): this {
    this.#hostFunctions.registerPrint(fn);
    return this;
  }

  /**
   * Creates the micro-VM, loads the guest and runs its initialisation. Can be called more than once; each
   * call makes an independent sandbox.
   *
   * @example
   * ```ts ignore
   * using sbx = new UninitializedSandbox("./guest/bin/testguest").evolve();
   * ```
   */
  evolve(): MultiUseSandbox {
    const vm = GuestVm.create(this.#layout, this.#buildMemory());
    try {
      this.#writeBootRecord(vm);
      vm.enterAt(BigInt(this.#elf.entry), BigInt(this.#layout.inputBase));
      const ctx = {
        functionName: "<init>",
        hostFunctions: this.#hostFunctions,
        maxExecutionTimeMs: this.#config.maxExecutionTimeMs,
      };
      vm.run(ctx);
      const r = vm.outputReader();
      try {
        const status = r.u32("init status");
        if (status !== STATUS_OK) {
          const code = r.u32("init error code");
          throw new GuestError("<init>", code, r.string("init error message"));
        }
        const dispatch = r.u64("dispatch address");
        if (
          !this.#elf.segments.some((s) =>
            (s.flags & PF_X) && dispatch >= s.vaddr && dispatch < s.vaddr + s.memSize
          )
        ) {
          throw new ProtocolError(
            `dispatch address 0x${dispatch.toString(16)} is not in an executable segment`,
          );
        }
        const functions = readFunctionList(r);
        return new MultiUseSandbox(vm, {
          dispatch,
          functions,
          hostFunctions: this.#hostFunctions.clone(),
          config: this.#config,
        });
      } catch (e) {
        if (e instanceof ProtocolError) {
          throw new GuestCrashedError(`protocol error in init result: ${e.message}`);
        }
        throw e;
      }
    } catch (e) {
      vm.close();
      throw e;
    }
  }

  #buildMemory(): Mapping {
    const mem = Mapping.anonymous(this.#layout.persistentSize);
    try {
      for (const s of this.#elf.segments) {
        mem.bytes.set(this.#image.subarray(s.fileOffset, s.fileOffset + s.fileSize), s.vaddr);
      }
      writeSystemArea(mem.bytes, this.#layout, this.#elf.segments);
      // The image (with its zero-filled .bss) and the start of the heap are what guest init touches first;
      // allocating them now saves a host page fault inside each guest fault.
      const hot = this.#layout.heapBase + Math.min(this.#layout.heapSize, 16 * 1024) - IMAGE_BASE;
      mem.advise(IMAGE_BASE, hot, MADV_POPULATE_WRITE);
      return mem;
    } catch (e) {
      mem.close();
      throw e;
    }
  }

  #writeBootRecord(vm: GuestVm): void {
    const l = this.#layout;
    const v = new DataView(vm.input.buffer, vm.input.byteOffset, 72);
    v.setUint32(0, BOOT_MAGIC, true);
    v.setUint32(4, ABI_VERSION, true);
    v.setBigUint64(8, BigInt(l.heapBase), true);
    v.setBigUint64(16, BigInt(l.heapSize), true);
    v.setBigUint64(24, BigInt(l.inputBase), true);
    v.setBigUint64(32, BigInt(l.inputSize), true);
    v.setBigUint64(40, BigInt(l.outputBase), true);
    v.setBigUint64(48, BigInt(l.outputSize), true);
    v.setUint32(56, LOG_LEVELS.indexOf(this.#config.guestLogLevel), true);
    v.setUint32(60, 0, true);
    v.setBigUint64(64, this.#config.guestInitArg, true);
  }
}
