/**
 * Builds the built-in BLAKE3 kernels, `_kernel_x86_64_sysv.ts` (Linux) and `_kernel_x86_64_win64.ts`
 * (Windows), from `_kernel.c` and the official BLAKE3 C sources that Debian ships in `librust-blake3-dev`
 * (`/usr/share/cargo/registry/blake3-<version>/c/`), with the host's `gcc` and binutils. The generated modules
 * are committed; run this after changing `_kernel.c` or the sources:
 *
 * ```sh
 * deno run -A format/blake3/build_kernel.ts          # rewrite the modules
 * deno run -A format/blake3/build_kernel.ts --check  # exit 1 if a rebuild differs from them
 * ```
 *
 * Each image is a flat blob built by `_tools/flat_image.ts`, which links it twice at two addresses to prove
 * it needs no loader: `.text` and `.rodata` first, then, from the next page, `.data` and `.bss` (the only
 * writable state is the CPU-feature cache of `blake3_dispatch.c`). The bytes depend only on the sources, the
 * flags below and the toolchain versions, which the module records.
 *
 * Both images are built here, on Linux: the Windows one compiles the C files with `-mabi=ms` (the Microsoft
 * x64 calling convention, which GCC supports on any x86-64 target) and uses the `*_windows_gnu.S` assembly
 * kernels, which are written for that convention. It contains no Windows API call, so nothing in it depends
 * on the OS it was built on.
 *
 * @module
 */

import type { KernelEntries, KernelImage, KernelTarget } from "./_kernel_image.ts";
import { blake3SourceVersion, findBlake3Sources, joinPath } from "./_sources.ts";
import {
  buildFlatImage,
  entryOffsets,
  FLAT_IMAGE_C_FLAGS,
  imageFieldLines,
  updateGeneratedFile,
} from "../../_tools/flat_image.ts";
import { runTool } from "../../_tools/run_tool.ts";

/** The four x86-64 SIMD kernels; `blake3_dispatch.c` picks one at run time with CPUID. */
const SIMD_KERNELS = ["sse2", "sse41", "avx2", "avx512"] as const;

/** The entry points the image must export, by `KernelEntries` field. */
const ENTRY_SYMBOLS: Record<keyof KernelEntries, string> = {
  hash: "snapvm_blake3_hash",
  work: "snapvm_blake3_work",
  root: "snapvm_blake3_root",
  version: "blake3_version",
};

/**
 * Flags for every C file, around the ones every flat image needs. -fno-tree-loop-distribute-patterns (among
 * those) matters here because `_kernel.c`'s own memcpy/memset loops would otherwise become calls to
 * themselves; -fstack-clash-protection probes any stack frame larger than a page, which Windows requires (its
 * thread stacks grow one guard page at a time); -ffile-prefix-map keeps build paths out.
 */
const C_FLAGS = ["-O3", "-std=gnu11", ...FLAT_IMAGE_C_FLAGS, "-fstack-clash-protection", "-DNDEBUG"];

/** How each target differs. */
const TARGETS: Record<KernelTarget, { module: string; exportName: string; cFlags: string[]; asm: string }> = {
  "x86_64-sysv": {
    module: "_kernel_x86_64_sysv.ts",
    exportName: "KERNEL_X86_64_SYSV",
    cFlags: [],
    asm: "unix",
  },
  "x86_64-win64": {
    module: "_kernel_x86_64_win64.ts",
    exportName: "KERNEL_X86_64_WIN64",
    // Windows has no red zone below the stack pointer (ms_abi functions never use one; this keeps it so).
    cFlags: ["-mabi=ms", "-mno-red-zone"],
    asm: "windows_gnu",
  },
};

/**
 * A built image, before it is written as a module.
 *
 * @example
 * ```ts ignore
 * import { buildKernelImage } from "./build_kernel.ts";
 *
 * const built = await buildKernelImage("x86_64-sysv");
 * console.log(built.image.length, built.entries);
 * ```
 */
export interface KernelBuild {
  /** What it was compiled for. */
  target: KernelTarget;
  /** The blob, from its first byte to the end of the initialised data. */
  image: Uint8Array;
  /** Page-aligned length of code and read-only data. */
  codeBytes: number;
  /** Page-aligned length of the whole mapping. */
  mappedBytes: number;
  /** Entry point offsets. */
  entries: KernelEntries;
  /** The BLAKE3 sources' version. */
  blake3Version: string;
  /** `gcc --version` and `ld --version` first lines. */
  toolchain: string;
}

/**
 * Options of {@linkcode buildKernelImage} and {@linkcode generateKernelModules}.
 *
 * @example
 * ```ts
 * import type { BuildKernelOptions } from "./build_kernel.ts";
 *
 * const options: BuildKernelOptions = { compiler: "gcc" };
 * console.log(options);
 * ```
 */
export interface BuildKernelOptions {
  /** The BLAKE3 `c/` folder. Defaults to the newest one from `librust-blake3-dev`. */
  sourceDir?: string;
  /** The C compiler, also used to assemble and link. Defaults to `gcc`. */
  compiler?: string;
}

/**
 * Compiles and links one kernel image.
 *
 * @param target What to build.
 * @param options Source folder and compiler.
 * @returns The image and its layout.
 * @throws If the sources, `gcc`, `objcopy` or `nm` are missing, a tool fails, the blob is not position
 *   independent or an entry point is missing.
 *
 * @example
 * ```ts ignore
 * import { buildKernelImage } from "./build_kernel.ts";
 *
 * console.log((await buildKernelImage("x86_64-win64")).mappedBytes);
 * ```
 */
export async function buildKernelImage(
  target: KernelTarget,
  options: BuildKernelOptions = {},
): Promise<KernelBuild> {
  const sourceDir = options.sourceDir ?? findBlake3Sources();
  if (sourceDir === null) throw new Error("BLAKE3 C sources not found (apt-get install librust-blake3-dev)");
  const compiler = options.compiler ?? "gcc";
  const spec = TARGETS[target];
  const shim = decodeURIComponent(new URL("./_kernel.c", import.meta.url).pathname);
  const built = await buildFlatImage({
    label: `BLAKE3 kernel ${target}`,
    writableData: true,
    compiler,
    compile: async (work) => {
      const objects: string[] = [];
      const cFiles = [
        shim,
        joinPath(sourceDir, "blake3_dispatch.c"),
        joinPath(sourceDir, "blake3_portable.c"),
      ];
      for (const [i, file] of cFiles.entries()) {
        const object = joinPath(work, `c${i}.o`);
        await runTool(compiler, [
          "-c",
          ...C_FLAGS,
          ...spec.cFlags,
          `-ffile-prefix-map=${sourceDir}=blake3`,
          `-ffile-prefix-map=${joinPath(shim, "..")}=snapvm`,
          "-I",
          sourceDir,
          "-o",
          object,
          file,
        ]);
        objects.push(object);
      }
      for (const kernel of SIMD_KERNELS) {
        const object = joinPath(work, `${kernel}.o`);
        const source = joinPath(sourceDir, `blake3_${kernel}_x86-64_${spec.asm}.S`);
        await runTool(compiler, ["-c", "-Wa,--noexecstack", "-o", object, source]);
        objects.push(object);
      }
      return objects;
    },
  });
  return {
    target,
    image: built.image,
    codeBytes: built.codeBytes,
    mappedBytes: built.mappedBytes,
    entries: entryOffsets(built, ENTRY_SYMBOLS),
    blake3Version: blake3SourceVersion(sourceDir),
    toolchain: built.toolchain,
  };
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

const ABI_NAMES: Record<KernelTarget, string> = {
  "x86_64-sysv": "the System V AMD64 calling convention (Linux)",
  "x86_64-win64": "the Microsoft x64 calling convention (Windows)",
};

/**
 * Renders a built image as the TypeScript module that `_native.ts` imports (formatted as `deno fmt` would).
 *
 * @param build The image.
 * @returns The module's source text.
 *
 * @example
 * ```ts ignore
 * import { buildKernelImage, renderKernelModule } from "./build_kernel.ts";
 *
 * console.log(renderKernelModule(await buildKernelImage("x86_64-sysv")).length);
 * ```
 */
export function renderKernelModule(build: KernelBuild): string {
  const spec = TARGETS[build.target];
  const kernel: Omit<KernelImage, "base64"> = build;
  return [
    "// Generated by `deno run -A format/blake3/build_kernel.ts` from format/blake3/_kernel.c and the BLAKE3",
    `// ${build.blake3Version} C sources of Debian's librust-blake3-dev. Do not edit: rebuild instead.`,
    "/**",
    ` * The built-in BLAKE3 kernel for x86-64 with ${ABI_NAMES[build.target]}:`,
    " * machine code compiled from the official BLAKE3 C implementation (CC0-1.0 OR Apache-2.0) and",
    " * `_kernel.c`. Internal to the format module.",
    " *",
    " * @module",
    " */",
    "",
    'import type { KernelImage } from "./_kernel_image.ts";',
    "",
    "/**",
    ` * The kernel image for \`${build.target}\`.`,
    " *",
    " * @example",
    " * ```ts",
    ` * import { ${spec.exportName} } from "./${spec.module}";`,
    " *",
    ` * console.log(${spec.exportName}.blake3Version); // "${build.blake3Version}"`,
    " * ```",
    " */",
    `export const ${spec.exportName}: KernelImage = {`,
    `  target: "${kernel.target}",`,
    `  blake3Version: "${kernel.blake3Version}",`,
    `  toolchain: "${kernel.toolchain}",`,
    `  codeBytes: ${hex(kernel.codeBytes)},`,
    `  mappedBytes: ${hex(kernel.mappedBytes)},`,
    ...imageFieldLines(kernel.entries, build.image),
    "};",
    "",
  ].join("\n");
}

/**
 * The path of a target's generated module.
 *
 * @param target The target.
 * @returns An absolute path next to this file.
 *
 * @example
 * ```ts
 * import { kernelModulePath } from "./build_kernel.ts";
 *
 * console.log(kernelModulePath("x86_64-sysv").endsWith("_kernel_x86_64_sysv.ts")); // true
 * ```
 */
export function kernelModulePath(target: KernelTarget): string {
  return decodeURIComponent(new URL(`./${TARGETS[target].module}`, import.meta.url).pathname);
}

/**
 * Every target, in a fixed order.
 *
 * @example
 * ```ts
 * import { KERNEL_TARGETS } from "./build_kernel.ts";
 *
 * console.log(KERNEL_TARGETS); // [ "x86_64-sysv", "x86_64-win64" ]
 * ```
 */
export const KERNEL_TARGETS: readonly KernelTarget[] = Object.keys(TARGETS) as KernelTarget[];

/**
 * The result of regenerating one module.
 *
 * @example
 * ```ts
 * import type { GeneratedKernel } from "./build_kernel.ts";
 *
 * const result: GeneratedKernel = { target: "x86_64-sysv", path: "x.ts", text: "", upToDate: true };
 * console.log(result.upToDate);
 * ```
 */
export interface GeneratedKernel {
  /** The target. */
  target: KernelTarget;
  /** The module's path. */
  path: string;
  /** The module text a rebuild gives. */
  text: string;
  /** Whether the file on disk already had exactly this text. */
  upToDate: boolean;
}

/**
 * Rebuilds every kernel and compares it with (or, with `write`, writes it over) the committed module.
 *
 * @param write Write modules that differ.
 * @param options Source folder and compiler.
 * @returns One entry per target.
 *
 * @example
 * ```ts ignore
 * import { generateKernelModules } from "./build_kernel.ts";
 *
 * for (const kernel of await generateKernelModules(false)) console.log(kernel.path, kernel.upToDate);
 * ```
 */
export async function generateKernelModules(
  write: boolean,
  options: BuildKernelOptions = {},
): Promise<GeneratedKernel[]> {
  const results: GeneratedKernel[] = [];
  for (const target of KERNEL_TARGETS) {
    const text = renderKernelModule(await buildKernelImage(target, options));
    const path = kernelModulePath(target);
    const upToDate = await updateGeneratedFile(path, text, write);
    results.push({ target, path, text, upToDate });
  }
  return results;
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  let stale = 0;
  for (const kernel of await generateKernelModules(!check)) {
    if (!kernel.upToDate) stale++;
    const state = kernel.upToDate ? "up to date" : check ? "DIFFERS from a rebuild" : "written";
    console.log(`${kernel.path}: ${state}`);
  }
  if (check && stale > 0) Deno.exit(1);
}
