/**
 * Builds `_run_thread_image.ts`, the machine code of the vCPU run thread (`_run_thread.c`), with the host's
 * `gcc` and binutils. The generated module is committed; run this after changing `_run_thread.c`:
 *
 * ```sh
 * deno run -A vm/kvm/build_run_thread.ts          # rewrite the module
 * deno run -A vm/kvm/build_run_thread.ts --check  # exit 1 if a rebuild differs from it
 * ```
 *
 * The C file is compiled position-independent, without libc (it makes raw system calls), and linked with a
 * linker script into one flat blob of code and read-only data; the script rejects any section it does not
 * place, and the build links the blob at two addresses and fails unless both are identical, which proves it
 * contains no absolute address. It has no writable data, so it is mapped read+execute and nothing else.
 *
 * @module
 */

/** The entry points the image exports, by field of `RunThreadEntries` (see `_run_thread_image.ts`). */
const ENTRY_SYMBOLS = {
  thread: "snapvm_run_thread",
  waitHot: "snapvm_run_wait_hot",
  now: "snapvm_run_now",
  rdtsc: "snapvm_run_rdtsc",
} as const;

/** Why each flag: see the module comment; -fno-tree-loop-distribute-patterns keeps out memset/memcpy calls. */
const C_FLAGS = [
  "-O2",
  "-std=gnu11",
  "-Wall",
  "-Werror",
  "-ffreestanding",
  "-fPIE",
  "-fvisibility=hidden",
  "-fno-tree-loop-distribute-patterns",
  "-fno-asynchronous-unwind-tables",
  "-fno-unwind-tables",
  "-fno-stack-protector",
  "-fcf-protection=none",
  "-mgeneral-regs-only",
];

const PAGE = 4096;
const LINK_BASES = [0, 0x4000_0000];

function linkerScript(base: number): string {
  return [
    "SECTIONS {",
    `  . = ${base};`,
    "  .text : { *(.text .text.*) }",
    "  .rodata : { *(.rodata .rodata.*) }",
    "  .got : { *(.got) *(.got.plt) *(.igot.plt) *(.iplt) }",
    "  .rela : { *(.rela.*) }",
    "  .data : { *(.data .data.*) *(.bss .bss.* COMMON) }",
    '  ASSERT(SIZEOF(.got) == 0, "the image would need a GOT")',
    '  ASSERT(SIZEOF(.rela) == 0, "the image would need relocations")',
    '  ASSERT(SIZEOF(.data) == 0, "the image must not have writable data")',
    "  /DISCARD/ : { *(.comment) *(.note .note.*) *(.eh_frame) *(.symtab_shndx) }",
    "}",
    "",
  ].join("\n");
}

async function run(tool: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(tool, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${tool} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * A built image: its bytes, entry offsets and the toolchain that made it.
 *
 * @example
 * ```ts ignore
 * import { buildRunThread, type RunThreadBuild } from "./build_run_thread.ts";
 * const build: RunThreadBuild = await buildRunThread();
 * console.log(build.entries.thread);
 * ```
 */
export interface RunThreadBuild {
  /** The blob. */
  image: Uint8Array;
  /** Entry point offsets, by field. */
  entries: Record<keyof typeof ENTRY_SYMBOLS, number>;
  /** `gcc --version` and `ld --version` first lines. */
  toolchain: string;
}

/**
 * Compiles and links the run thread.
 *
 * @example
 * ```ts ignore
 * import { buildRunThread } from "./build_run_thread.ts";
 * console.log((await buildRunThread()).image.length);
 * ```
 */
export async function buildRunThread(compiler = "gcc"): Promise<RunThreadBuild> {
  const source = decodeURIComponent(new URL("./_run_thread.c", import.meta.url).pathname);
  const work = await Deno.makeTempDir({ prefix: "snapvm-run-thread-" });
  try {
    const object = `${work}/run_thread.o`;
    await run(compiler, [
      "-c",
      ...C_FLAGS,
      `-ffile-prefix-map=${source}=_run_thread.c`,
      "-o",
      object,
      source,
    ]);
    const blobs: Uint8Array[] = [];
    const symbols = new Map<string, number>();
    for (const base of LINK_BASES) {
      const script = `${work}/image-${base}.ld`, elf = `${work}/image-${base}.elf`;
      const blob = `${work}/image-${base}.bin`;
      await Deno.writeTextFile(script, linkerScript(base));
      await run(compiler, [
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
        object,
      ]);
      await run("objcopy", ["-O", "binary", elf, blob]);
      blobs.push(await Deno.readFile(blob));
      if (base === 0) {
        for (const line of (await run("nm", ["-P", elf])).split("\n")) {
          const [name, _type, value] = line.trim().split(/\s+/);
          if (name && value) symbols.set(name, Number.parseInt(value, 16));
        }
      }
    }
    if (blobs[0].length !== blobs[1].length || blobs[0].some((b, i) => b !== blobs[1][i])) {
      throw new Error("run thread: the image changes with its link address (not position independent)");
    }
    if (blobs[0].length > PAGE * 4) throw new Error(`run thread: image of ${blobs[0].length} bytes`);
    const entries = Object.fromEntries(
      Object.entries(ENTRY_SYMBOLS).map(([field, name]) => {
        const value = symbols.get(name);
        if (value === undefined) throw new Error(`run thread: no symbol ${name}`);
        return [field, value];
      }),
    ) as RunThreadBuild["entries"];
    const gcc = (await run(compiler, ["--version"])).split("\n")[0].trim();
    const ld = (await run(compiler, ["-Wl,--version", "-nostdlib", "-o", "/dev/null"])).split("\n")[0].trim();
    return { image: blobs[0], entries, toolchain: `${gcc}; ${ld}` };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * The module text for a build (formatted as `deno fmt` would).
 *
 * @example
 * ```ts ignore
 * import { buildRunThread, renderRunThreadModule } from "./build_run_thread.ts";
 * console.log(renderRunThreadModule(await buildRunThread()));
 * ```
 */
export function renderRunThreadModule(build: RunThreadBuild): string {
  const base64 = btoa(String.fromCharCode(...build.image));
  const lines: string[] = [];
  for (let i = 0; i < base64.length; i += 100) lines.push(`    "${base64.slice(i, i + 100)}",`);
  const hex = (n: number) => `0x${n.toString(16)}`;
  return [
    "// Generated by `deno run -A vm/kvm/build_run_thread.ts` from vm/kvm/_run_thread.c. Do not edit: rebuild",
    "// instead.",
    "/**",
    " * The vCPU run thread's machine code (x86-64, System V calling convention, Linux system calls).",
    " *",
    " * @module",
    " */",
    "",
    "/**",
    " * The image: position-independent code without imports or writable data, entry points as byte offsets.",
    " *",
    " * @example",
    " * ```ts",
    ' * import { RUN_THREAD_IMAGE } from "./_run_thread_image.ts";',
    " * console.log(RUN_THREAD_IMAGE.entries.thread >= 0);",
    " * ```",
    " */",
    "export const RUN_THREAD_IMAGE = {",
    `  toolchain: ${JSON.stringify(build.toolchain)},`,
    "  entries: {",
    ...Object.entries(build.entries).map(([k, v]) => `    ${k}: ${hex(v)},`),
    "  },",
    "  base64: [",
    ...lines,
    '  ].join(""),',
    "} as const;",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const target = new URL("./_run_thread_image.ts", import.meta.url);
  const text = renderRunThreadModule(await buildRunThread());
  if (Deno.args.includes("--check")) {
    const current = await Deno.readTextFile(target).catch(() => "");
    if (current !== text) {
      console.error("vm/kvm/_run_thread_image.ts differs from a fresh build");
      Deno.exit(1);
    }
    console.error("vm/kvm/_run_thread_image.ts matches a fresh build");
  } else {
    await Deno.writeTextFile(target, text);
    console.error("wrote vm/kvm/_run_thread_image.ts");
  }
}
