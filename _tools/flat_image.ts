/**
 * Builds a flat machine-code image from C with the host's `gcc` and binutils: a blob that needs no loader,
 * because it contains no absolute address, and is used by copying it into executable memory and calling its
 * entry points by byte offset. The BLAKE3 kernels (`format/blake3/build_kernel.ts`) and the vCPU run thread
 * (`vm/kvm/build_run_thread.ts`) are built this way. Build time only; not part of the published package.
 *
 * The caller compiles its objects with {@linkcode FLAT_IMAGE_C_FLAGS} (position-independent, hidden
 * visibility, no libc); {@linkcode buildFlatImage} links them with a linker script that places `.text`
 * and `.rodata` first and, from the next page, `.data` and `.bss`, and rejects any section it does not place
 * (`--orphan-handling=error`) as well as a GOT or dynamic relocations. It links twice, at two different
 * addresses, and fails unless the two blobs are identical, which proves the blob has no absolute address.
 *
 * @module
 */

import { runTool } from "./run_tool.ts";

/**
 * The C compiler flags every object of a flat image needs; callers add their own (optimisation level,
 * language, warnings) around them. -fPIE with hidden visibility makes every reference RIP-relative, so
 * nothing needs a GOT or a relocation; -fno-tree-loop-distribute-patterns keeps GCC from turning copy and
 * fill loops into calls to memcpy/memset, which an image without libc does not have; no unwind tables, stack
 * protector (it would need libc's canary) or CET notes, none of which a flat image can use.
 *
 * @example
 * ```ts
 * import { FLAT_IMAGE_C_FLAGS } from "./flat_image.ts";
 *
 * console.log(["-O2", ...FLAT_IMAGE_C_FLAGS].join(" "));
 * ```
 */
export const FLAT_IMAGE_C_FLAGS: readonly string[] = [
  "-fPIE",
  "-fvisibility=hidden",
  "-fno-tree-loop-distribute-patterns",
  "-fno-asynchronous-unwind-tables",
  "-fno-unwind-tables",
  "-fno-stack-protector",
  "-fcf-protection=none",
];

/** The two link addresses whose blobs must match. */
const LINK_BASES = [0, 0x4000_0000];

const PAGE = 4096;

/** The linker script's symbols for the page-aligned end of the code and of the whole image. */
const CODE_END = "snapvm_code_end";
const IMAGE_END = "snapvm_image_end";

function linkerScript(base: number, writableData: boolean): string {
  return [
    "SECTIONS {",
    `  . = ${base};`,
    "  .text : { *(.text .text.*) }",
    "  .rodata : { *(.rodata .rodata.*) }",
    // The linker always creates these; they must stay empty, or the image would need a loader.
    "  .got : { *(.got) *(.got.plt) *(.igot.plt) *(.iplt) }",
    "  .rela : { *(.rela.*) }",
    '  ASSERT(SIZEOF(.got) == 0, "the image would need a GOT")',
    '  ASSERT(SIZEOF(.rela) == 0, "the image would need relocations")',
    `  . = ALIGN(${PAGE});`,
    `  ${CODE_END} = .;`,
    "  .data : { *(.data .data.*) *(.bss .bss.* COMMON) }",
    ...(writableData ? [] : ['  ASSERT(SIZEOF(.data) == 0, "the image must not have writable data")']),
    `  . = ALIGN(${PAGE});`,
    `  ${IMAGE_END} = .;`,
    "  /DISCARD/ : { *(.comment) *(.note .note.*) *(.eh_frame) *(.symtab_shndx) }",
    "}",
    "",
  ].join("\n");
}

/** An image could not be built: a tool's output is not a loadable flat image. */
export class ImageBuildError extends Error {
  /**
   * Says which image and what was wrong with it.
   *
   * @param label The image, such as `run thread`.
   * @param reason What was wrong.
   *
   * @example
   * ```ts
   * import { ImageBuildError } from "./flat_image.ts";
   *
   * console.log(new ImageBuildError("run thread", "no symbol snapvm_run_thread").message);
   * // "Cannot build run thread: no symbol snapvm_run_thread"
   * ```
   */
  constructor(label: string, reason: string) {
    super(`Cannot build ${label}: ${reason}`);
    this.name = "ImageBuildError";
  }
}

/**
 * What to build.
 *
 * @example
 * ```ts
 * import type { FlatImageSpec } from "./flat_image.ts";
 *
 * const spec: FlatImageSpec = { label: "demo", writableData: false, compile: () => Promise.resolve([]) };
 * console.log(spec.label);
 * ```
 */
export interface FlatImageSpec {
  /** Names the image in error messages and its scratch folder, such as `run thread`. */
  label: string;
  /**
   * Whether the image may have writable data (`.data`, `.bss`), placed from the page after the code; without,
   * the link fails if an object has any.
   */
  writableData: boolean;
  /** The C compiler, also used to link. Defaults to `gcc`. */
  compiler?: string;
  /**
   * Compiles the objects into a scratch folder that is removed afterwards.
   *
   * @param workDir The scratch folder.
   * @returns The object files to link, in order.
   */
  compile(workDir: string): Promise<string[]>;
}

/**
 * A built image.
 *
 * @example
 * ```ts ignore
 * import { buildFlatImage, type FlatImage } from "./flat_image.ts";
 *
 * const compile = () => compileDemo(); // returns the object files
 * const built: FlatImage = await buildFlatImage({ label: "demo", writableData: false, compile });
 * console.log(built.image.length, built.codeBytes);
 * ```
 */
export interface FlatImage {
  /** What {@linkcode FlatImageSpec.label} named it. */
  label: string;
  /** The blob, from its first byte to the end of the initialised data. */
  image: Uint8Array;
  /** Page-aligned length of code and read-only data. */
  codeBytes: number;
  /** Page-aligned length of the whole mapping (code, data and the zeroed `.bss`). */
  mappedBytes: number;
  /** Every symbol (`nm -P`), as an offset from the image's start. */
  symbols: ReadonlyMap<string, number>;
  /** `gcc --version` and `ld --version` first lines. */
  toolchain: string;
}

function parseSymbols(nmOutput: string): Map<string, number> {
  const symbols = new Map<string, number>();
  for (const line of nmOutput.split("\n")) {
    // `nm -P`: name, type, value (hex), size.
    const [name, _type, value] = line.trim().split(/\s+/);
    if (name && value) symbols.set(name, Number.parseInt(value, 16));
  }
  return symbols;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function firstLine(text: string): string {
  return text.split("\n")[0].trim();
}

/**
 * Compiles and links an image, and proves that it is position independent.
 *
 * @param spec What to build.
 * @returns The image and its layout.
 * @throws {ImageBuildError} If the blob changes with its link address or is laid out unexpectedly.
 * @throws {ToolNotFoundError} If `gcc`, `objcopy` or `nm` is missing (and `Error` if one fails).
 *
 * @example
 * ```ts ignore
 * import { buildFlatImage, FLAT_IMAGE_C_FLAGS } from "./flat_image.ts";
 * import { runTool } from "./run_tool.ts";
 *
 * const built = await buildFlatImage({
 *   label: "demo",
 *   writableData: false,
 *   compile: async (workDir) => {
 *     await runTool("gcc", ["-c", "-O2", ...FLAT_IMAGE_C_FLAGS, "-o", `${workDir}/demo.o`, "demo.c"]);
 *     return [`${workDir}/demo.o`];
 *   },
 * });
 * console.log(built.symbols.get("demo_entry"));
 * ```
 */
export async function buildFlatImage(spec: FlatImageSpec): Promise<FlatImage> {
  const compiler = spec.compiler ?? "gcc";
  const work = await Deno.makeTempDir({ prefix: `snapvm-${spec.label.replace(/\W+/g, "-")}-` });
  try {
    const objects = await spec.compile(work);
    const blobs: Uint8Array[] = [];
    let symbols = new Map<string, number>();
    for (const base of LINK_BASES) {
      const script = `${work}/image-${base}.ld`;
      const elf = `${work}/image-${base}.elf`;
      const blob = `${work}/image-${base}.bin`;
      await Deno.writeTextFile(script, linkerScript(base, spec.writableData));
      await runTool(compiler, [
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--orphan-handling=error",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
        "-Wl,-e,0",
        "-T",
        script,
        "-o",
        elf,
        ...objects,
      ]);
      await runTool("objcopy", ["-O", "binary", elf, blob]);
      blobs.push(await Deno.readFile(blob));
      if (base === 0) symbols = parseSymbols(await runTool("nm", ["-P", elf]));
    }
    if (!equalBytes(blobs[0], blobs[1])) {
      throw new ImageBuildError(
        spec.label,
        "the image changes with its link address (not position independent)",
      );
    }
    const codeBytes = symbols.get(CODE_END) ?? 0;
    const mappedBytes = symbols.get(IMAGE_END) ?? 0;
    if (blobs[0].length > mappedBytes || codeBytes > mappedBytes) {
      throw new ImageBuildError(
        spec.label,
        `unexpected layout (${blobs[0].length} bytes, code ${codeBytes}, mapped ${mappedBytes})`,
      );
    }
    return {
      label: spec.label,
      image: blobs[0],
      codeBytes,
      mappedBytes,
      symbols,
      toolchain: await toolchainOf(compiler),
    };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * The first lines of `gcc --version` and `ld --version`, as generated modules record them.
 *
 * @example
 * ```ts ignore
 * import { toolchainOf } from "./flat_image.ts";
 * console.log(await toolchainOf("gcc"));
 * ```
 */
export async function toolchainOf(compiler: string): Promise<string> {
  const gcc = firstLine(await runTool(compiler, ["--version"]));
  const ld = firstLine(await runTool(compiler, ["-Wl,--version", "-nostdlib", "-o", "/dev/null"]));
  return `${gcc}; ${ld}`;
}

/**
 * The offsets of an image's entry points, which must lie in its code.
 *
 * @param built The image.
 * @param names The symbol of each entry point, by field.
 * @returns The offset of each entry point, by field.
 * @throws {ImageBuildError} If a symbol is missing or outside the code.
 *
 * @example
 * ```ts ignore
 * import { buildFlatImage, entryOffsets } from "./flat_image.ts";
 *
 * const entries = entryOffsets(await buildFlatImage(spec), { run: "demo_run" });
 * console.log(entries.run);
 * ```
 */
export function entryOffsets<K extends string>(
  built: FlatImage,
  names: Record<K, string>,
): Record<K, number> {
  const entries = {} as Record<K, number>;
  for (const [field, name] of Object.entries(names) as [K, string][]) {
    const offset = built.symbols.get(name);
    if (offset === undefined) throw new ImageBuildError(built.label, `no symbol ${name}`);
    if (offset >= built.codeBytes) {
      throw new ImageBuildError(
        built.label,
        `${name} at ${offset} is outside the code (${built.codeBytes} bytes)`,
      );
    }
    entries[field] = offset;
  }
  return entries;
}

/**
 * The `entries` and `base64` fields of a generated image module, as `deno fmt` formats them inside an object
 * literal: entry offsets in hex, and the bytes as base64 in quoted chunks of 100 characters.
 *
 * @param entries The entry point offsets, by field.
 * @param image The bytes.
 * @returns The lines, indented by two spaces.
 *
 * @example
 * ```ts
 * import { imageFieldLines } from "./flat_image.ts";
 *
 * const lines = imageFieldLines({ run: 16 }, new Uint8Array([1, 2, 3]));
 * console.log(lines[1], lines[4]); // "    run: 0x10," and the chunk "    \"AQID\","
 * ```
 */
export function imageFieldLines<K extends string>(
  entries: Readonly<Record<K, number>>,
  image: Uint8Array,
): string[] {
  return [
    "  entries: {",
    ...(Object.entries(entries) as [K, number][]).map(([field, offset]) =>
      `    ${field}: 0x${offset.toString(16)},`
    ),
    "  },",
    ...base64Lines(image),
  ];
}

/**
 * The `base64` field of a generated module: `bytes` in base64, as 100-character string literals joined.
 *
 * @example
 * ```ts
 * import { base64Lines } from "./flat_image.ts";
 *
 * console.log(base64Lines(new Uint8Array([1, 2, 3]))[1]); // '    "AQID",'
 * ```
 */
export function base64Lines(bytes: Uint8Array): string[] {
  let text = "";
  // In slices: spreading a whole large image as arguments would overflow the call stack.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  const base64 = btoa(text);
  const chunks: string[] = [];
  for (let i = 0; i < base64.length; i += 100) chunks.push(`    "${base64.slice(i, i + 100)}",`);
  return ["  base64: [", ...chunks, '  ].join(""),'];
}

/**
 * Compares a generated module with the file on disk and, with `write`, writes it over a differing one.
 *
 * @param path The module's path or file URL.
 * @param text The text a rebuild gives.
 * @param write Write the file if it differs.
 * @returns Whether the file already had exactly this text.
 *
 * @example
 * ```ts
 * import { updateGeneratedFile } from "./flat_image.ts";
 *
 * const path = await Deno.makeTempFile();
 * console.log(await updateGeneratedFile(path, "text", true)); // false: it was empty
 * console.log(await updateGeneratedFile(path, "text", false)); // true
 * await Deno.remove(path);
 * ```
 */
export async function updateGeneratedFile(
  path: string | URL,
  text: string,
  write: boolean,
): Promise<boolean> {
  let current: string | null = null;
  try {
    current = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const upToDate = current === text;
  if (write && !upToDate) await Deno.writeTextFile(path, text);
  return upToDate;
}
