/**
 * Builds `libblake3.so`, the official BLAKE3 C library, from the sources that Debian ships in the package
 * `librust-blake3-dev` (`/usr/share/cargo/registry/blake3-<version>/c/`). snapvm does not need it at run time
 * (its built-in kernel, see `build_kernel.ts`, comes first); it is the `"library"` backend of
 * `format/blake3.ts` when named by `$SNAPVM_BLAKE3_LIB`, and what the tests compare the kernel against.
 *
 * On x86-64 it compiles the portable code plus the SSE2, SSE4.1, AVX2 and AVX-512 assembly kernels (the C
 * library picks one at run time with CPUID); the assembly measured about 25% faster than the intrinsics
 * versions here (5.1 against 4.0 GB/s). Without the assembly files it falls back to the intrinsics files, each
 * compiled with its own `-m` flag. On aarch64 it uses the NEON kernel, elsewhere the portable code only.
 *
 * Run as a script to build into the repository's `build/` folder:
 *
 * ```sh
 * deno run -A format/blake3/build_library.ts [outDir]
 * ```
 *
 * @module
 */

import { absolutePath, findBlake3Sources, joinPath, pathExists } from "./_sources.ts";

const LIBRARY_NAME = "libblake3.so";
const COMMON_FLAGS = ["-O3", "-fPIC", "-Wa,--noexecstack"];

/**
 * Options of {@linkcode buildBlake3}.
 *
 * @example
 * ```ts
 * import type { BuildBlake3Options } from "./build_library.ts";
 *
 * const options: BuildBlake3Options = { sourceDir: "/usr/share/cargo/registry/blake3-1.3.1/c" };
 * console.log(options);
 * ```
 */
export interface BuildBlake3Options {
  /** The BLAKE3 `c/` folder. Defaults to the newest `blake3-*` under `/usr/share/cargo/registry`. */
  sourceDir?: string;
  /** The C compiler. Defaults to `gcc`. */
  compiler?: string;
}

interface Step {
  args: string[];
}

/** The compiler invocations for this architecture, the last one linking `output`. */
function planBuild(sourceDir: string, output: string, objectDir: string): Step[] {
  const src = (name: string) => joinPath(sourceDir, name);
  const core = [src("blake3.c"), src("blake3_dispatch.c"), src("blake3_portable.c")];
  const link = ["-shared", ...COMMON_FLAGS, "-o", output];
  if (Deno.build.arch === "x86_64") {
    const kernels = ["sse2", "sse41", "avx2", "avx512"];
    const assembly = kernels.map((kernel) => src(`blake3_${kernel}_x86-64_unix.S`));
    if (assembly.every(pathExists)) return [{ args: [...link, ...core, ...assembly] }];
    // Intrinsics: each file needs its own -m flags, and only that file may get them (the dispatcher must
    // stay runnable on CPUs without AVX), so compile them one by one.
    const flags: Record<string, string[]> = {
      sse2: ["-msse2"],
      sse41: ["-msse4.1"],
      avx2: ["-mavx2"],
      avx512: ["-mavx512f", "-mavx512vl"],
    };
    const steps: Step[] = [];
    const objects: string[] = [];
    for (const kernel of kernels) {
      const object = joinPath(objectDir, `blake3_${kernel}.o`);
      steps.push({
        args: ["-c", ...COMMON_FLAGS, ...flags[kernel], "-o", object, src(`blake3_${kernel}.c`)],
      });
      objects.push(object);
    }
    steps.push({ args: [...link, ...core, ...objects] });
    return steps;
  }
  if (Deno.build.arch === "aarch64") {
    return [{ args: [...link, "-DBLAKE3_USE_NEON=1", ...core, src("blake3_neon.c")] }];
  }
  const noSimd = ["-DBLAKE3_NO_SSE2", "-DBLAKE3_NO_SSE41", "-DBLAKE3_NO_AVX2", "-DBLAKE3_NO_AVX512"];
  return [{ args: [...link, ...noSimd, "-DBLAKE3_USE_NEON=0", ...core] }];
}

function newestSourceTime(sourceDir: string): number {
  let newest = 0;
  for (const entry of Deno.readDirSync(sourceDir)) {
    const mtime = Deno.statSync(joinPath(sourceDir, entry.name)).mtime?.getTime() ?? 0;
    newest = Math.max(newest, mtime);
  }
  return newest;
}

/**
 * Compiles the BLAKE3 C library into `outDir/libblake3.so` (with `gcc -O3 -shared -fPIC`), unless an
 * up-to-date one built the same way is already there. The library is written under a temporary name and
 * renamed into place, so a concurrent build or a process opening it never sees half a file.
 *
 * @param outDir Folder for the library; created if missing.
 * @param options Source folder and compiler overrides.
 * @returns The absolute path of the library, or `null` (after printing one line to stderr) when the C
 *   sources or the compiler are missing.
 * @throws If the compiler fails on the sources.
 *
 * @example
 * ```ts ignore
 * import { buildBlake3 } from "./build_library.ts";
 *
 * const path = await buildBlake3("build");
 * console.log(path ?? "no C library");
 * ```
 */
export async function buildBlake3(outDir: string, options: BuildBlake3Options = {}): Promise<string | null> {
  const sourceDir = options.sourceDir ?? findBlake3Sources();
  if (sourceDir === null || !pathExists(joinPath(sourceDir, "blake3.c"))) {
    console.error(
      `buildBlake3: BLAKE3 C sources not found (apt-get install librust-blake3-dev)`,
    );
    return null;
  }
  const compiler = options.compiler ?? "gcc";
  const dir = absolutePath(outDir);
  const output = joinPath(dir, LIBRARY_NAME);
  const stampPath = `${output}.stamp`;
  const stamp = JSON.stringify({
    compiler,
    sourceDir,
    arch: Deno.build.arch,
    plan: planBuild(sourceDir, output, ""),
  });
  if (pathExists(output) && pathExists(stampPath) && Deno.readTextFileSync(stampPath) === stamp) {
    const built = Deno.statSync(output).mtime?.getTime() ?? 0;
    if (built >= newestSourceTime(sourceDir)) return output;
  }

  await Deno.mkdir(dir, { recursive: true });
  const objectDir = await Deno.makeTempDir({ prefix: "snapvm-blake3-" });
  const temporary = joinPath(dir, `.${LIBRARY_NAME}.${Deno.pid}.${crypto.randomUUID()}.tmp`);
  try {
    for (const step of planBuild(sourceDir, temporary, objectDir)) {
      let result: Deno.CommandOutput;
      try {
        result = await new Deno.Command(compiler, { args: step.args, stdout: "piped", stderr: "piped" })
          .output();
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) {
          console.error(`buildBlake3: C compiler '${compiler}' not found`);
          return null;
        }
        throw error;
      }
      if (!result.success) {
        const stderr = new TextDecoder().decode(result.stderr).trim();
        throw new Error(`buildBlake3: ${compiler} ${step.args.join(" ")} failed:\n${stderr}`);
      }
    }
    await Deno.rename(temporary, output);
    await Deno.writeTextFile(stampPath, stamp);
    return output;
  } finally {
    await Deno.remove(objectDir, { recursive: true }).catch(() => {});
    await Deno.remove(temporary).catch(() => {});
  }
}

if (import.meta.main) {
  const outDir = Deno.args[0] ?? decodeURIComponent(new URL("../../build", import.meta.url).pathname);
  const path = await buildBlake3(outDir);
  if (path !== null) console.log(path);
}
