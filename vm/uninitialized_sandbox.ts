/**
 * A guest binary and its configuration, before the VM exists.
 *
 * @module
 */
import { IMAGE_BASE } from "./machine/abi.ts";
import { initialise } from "./machine/init.ts";
import { newFamily, recordHostFunctions, type Snapshot, snapshotFromMemory } from "./snapshot.ts";
import { GuestVm } from "./machine/guest_vm.ts";
import { newGeneration, writeInfoPage, writeSystemArea } from "./machine/system_area.ts";
import { resolveConfiguration, type ResolvedConfiguration, type SandboxConfiguration } from "./config.ts";
import { type ElfImage, MAX_IMAGE_SIZE, parseElf } from "./machine/elf.ts";
import { GuestBinaryError } from "./errors.ts";
import { type HostFunction, HostFunctions } from "./host_functions.ts";
import { computeLayout, type Layout } from "./machine/layout.ts";
import { loadGuest } from "../guest/sdk.ts";
import { Mapping } from "./memory/mapping.ts";
import { type MultiUseSandbox, sandboxOf } from "./multi_use_sandbox.ts";
import type { Signature } from "./types.ts";
import { binaryInfo, type GuestBinaryInfo, SandboxDebugger } from "./debug/sandbox_debugger.ts";

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
  /** The binary's path, when it came from a file (recorded for debuggers and core dumps). */
  readonly #path: string | undefined;

  /**
   * Like the constructor, for any guest Deno can read: a path, or a `file:`, `http:` or `https:` URL (such
   * as a guest shipped in a package: `new URL("./guest/bin/hello", import.meta.resolve("@snapvm/snapvm"))`).
   * Refuses files larger than the largest image the loader accepts.
   *
   * @example
   * ```ts ignore
   * const u = await UninitializedSandbox.load(new URL("https://example.com/guests/hello"));
   * using sbx = u.evolve();
   * ```
   */
  static async load(
    guest: string | URL,
    config?: SandboxConfiguration,
    hostFunctions?: HostFunctions,
  ): Promise<UninitializedSandbox> {
    const bytes = await loadGuest(guest);
    const u = new UninitializedSandbox(bytes, config, hostFunctions);
    if (typeof guest === "string" && !/^[a-z]+:/i.test(guest)) u.#pathOverride = guest;
    else if (guest instanceof URL && guest.protocol === "file:") {
      u.#pathOverride = decodeURIComponent(guest.pathname);
    }
    return u;
  }

  #pathOverride: string | undefined;

  /** The guest binary's path, when it was read from a file (`undefined` for bytes and remote URLs). */
  get binaryPath(): string | undefined {
    return this.#pathOverride ?? this.#path;
  }

  /**
   * Reads and validates the guest binary and the configuration. Throws `GuestBinaryError` for a bad ELF
   * or a file larger than the largest image (`MAX_IMAGE_SIZE`, 64 MiB: reading stops there, so a device
   * such as `/dev/zero` fails fast), TypeError/RangeError for a bad configuration, and Deno's own errors
   * (such as `Deno.errors.NotFound`) when the file cannot be read. A path or `file:` URL is read here with
   * Deno's file API, so files inside a `deno compile` executable work as they are; for `http:`/`https:`
   * URLs (a guest shipped in a package) use {@linkcode UninitializedSandbox.load}.
   */
  constructor(guest: GuestBinary, config?: SandboxConfiguration, hostFunctions?: HostFunctions) {
    if (guest instanceof URL && guest.protocol !== "file:") {
      throw new TypeError(
        `Cannot read a guest from ${guest.protocol} synchronously: use await UninitializedSandbox.load(url)`,
      );
    }
    this.#image = guest instanceof Uint8Array ? guest.slice() : readGuestFile(guest);
    this.#path = typeof guest === "string"
      ? guest
      : guest instanceof URL
      ? decodeURIComponent(guest.pathname)
      : undefined;
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

  /**
   * The binary for debuggers and core dumps: `guestBinaryPath` when configured, else the path it was read
   * from (its segments are known then), else none.
   */
  #binaryInfo(): GuestBinaryInfo | undefined {
    if (this.#binary === null) {
      const configured = this.#config.guestBinaryPath;
      const path = configured ?? this.binaryPath;
      const segments = configured === undefined ? this.#elf.segments : undefined;
      this.#binary = path === undefined ? undefined : binaryInfo(path, BigInt(this.#elf.entry), segments);
    }
    return this.#binary;
  }

  /** {@linkcode #binaryInfo}, made at the first `evolve()` (null before). */
  #binary: GuestBinaryInfo | undefined | null = null;

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
    const vm = GuestVm.create(this.#layout, (mem) => this.#fill(mem));
    try {
      const binary = this.#binaryInfo();
      vm.debugger = SandboxDebugger.create(vm, { ...this.#config, binary });
      const { dispatch, functions } = initialise(
        vm,
        BigInt(this.#elf.entry),
        this.#config,
        this.#hostFunctions,
      );
      return sandboxOf(vm, {
        dispatch,
        functions,
        hostFunctions: this.#hostFunctions.clone(),
        config: this.#config,
        family: newFamily(),
        binary,
      });
    } catch (e) {
      vm.close();
      throw e;
    }
  }

  /**
   * A snapshot of the sandbox before guest init (entry point Initialise): the loaded image, page tables and
   * layout, without running anything. Sandboxes made from it run guest init first. For a guest read from a
   * file, the snapshot records the binary's path and entry point (`Snapshot.binary`), for debuggers and
   * core dumps of its sandboxes.
   *
   * @example
   * ```ts ignore
   * const pre = new UninitializedSandbox("./guest/bin/testguest").snapshot();
   * await pre.toFile("testguest-preinit.hls");
   * ```
   */
  snapshot(): Snapshot {
    using mem = Mapping.reserve(this.#layout.persistentSize);
    this.#fill(mem);
    const binary = this.#binaryInfo();
    return snapshotFromMemory(mem, {
      layout: this.#layout,
      entrypoint: "Initialise",
      entryAddr: BigInt(this.#elf.entry),
      hostFunctions: recordHostFunctions(this.#hostFunctions),
      family: newFamily(),
      binary: binary && { path: binary.path, entry: binary.entry },
    });
  }

  /** Writes the image and the system area into `mem` (zero-filled, the persistent region's size). */
  #fill(mem: Mapping): void {
    for (const s of this.#elf.segments) {
      mem.window(s.vaddr, s.fileSize).set(this.#image.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    }
    writeSystemArea(mem.window(0, IMAGE_BASE), this.#layout, this.#elf.segments);
    writeInfoPage(mem);
    newGeneration(mem);
    // The image (with its zero-filled .bss) and the start of the heap are what guest init touches first;
    // allocating them now saves a host page fault inside each guest fault.
    const hot = this.#layout.heapBase + Math.min(this.#layout.heapSize, 16 * 1024) - IMAGE_BASE;
    mem.prefault(IMAGE_BASE, hot);
  }
}

/**
 * Reads a guest binary file whole, stopping past `MAX_IMAGE_SIZE` (the largest image the ELF loader
 * accepts), so that a huge file or an endless device is refused instead of read into memory.
 */
function readGuestFile(path: string | URL): Uint8Array {
  using file = Deno.openSync(path, { read: true });
  const limit = MAX_IMAGE_SIZE;
  const tooLarge = () =>
    new GuestBinaryError(
      `the file is larger than ${limit} bytes (MAX_IMAGE_SIZE, the largest image the loader accepts)`,
    );
  const size = file.statSync().size; // 0 for devices, FIFOs and files that report none
  if (size > limit) throw tooLarge();
  let buffer = new Uint8Array(Math.max(64 * 1024, size + 1));
  let total = 0;
  for (;;) {
    if (total === buffer.length) {
      if (total > limit) throw tooLarge();
      const larger = new Uint8Array(Math.min(limit + 1, buffer.length * 2));
      larger.set(buffer);
      buffer = larger;
    }
    const n = file.readSync(buffer.subarray(total));
    if (n === null) break;
    total += n;
  }
  if (total > limit) throw tooLarge();
  return buffer.subarray(0, total);
}
