/**
 * The guest SDK as a module: the C header, runtime, start code and linker script that ship in the package,
 * the gcc command that builds a guest against them, and the example guests.
 *
 * Every file is read relative to this module's URL, so the same code works from a checkout (`file:`), from
 * JSR or any other `https:` server, and from a `deno compile` binary that embeds the files with
 * `--include`. Building needs gcc on the machine; nothing else from the checkout.
 *
 * @example Build a guest and call it
 * ```ts ignore
 * import { buildGuest } from "@snapvm/snapvm/guest";
 * import { UninitializedSandbox } from "@snapvm/snapvm";
 *
 * await buildGuest(["hello.c"], "hello.elf");
 * using sbx = new UninitializedSandbox("hello.elf").evolve();
 * ```
 *
 * @module
 */
import { SnapvmError } from "../errors.ts";
import { MAX_IMAGE_SIZE } from "../vm/machine/elf.ts";

/**
 * The SDK's files, relative to this module's directory: everything gcc needs besides the guest's own
 * sources. A file added to `runtime/` must be listed here (the repository build refuses to run otherwise).
 *
 * @example
 * ```ts
 * import { SDK_FILES } from "./sdk.ts";
 * console.log(SDK_FILES.includes("include/snapvm.h")); // true
 * ```
 */
export const SDK_FILES: readonly string[] = [
  "include/snapvm.h",
  "link.ld",
  "runtime/internal.h",
  "runtime/libc.c",
  "runtime/malloc.c",
  "runtime/random.c",
  "runtime/runtime.c",
  "runtime/start.S",
];

/**
 * The runtime's translation units in link order (sorted, so the output bytes never depend on directory
 * order); the guest's sources follow them on the gcc command line.
 *
 * @example
 * ```ts
 * import { RUNTIME_SOURCES } from "./sdk.ts";
 * console.log(RUNTIME_SOURCES); // ["runtime/libc.c", "runtime/malloc.c", "runtime/random.c", "runtime/runtime.c", "runtime/start.S"]
 * ```
 */
export const RUNTIME_SOURCES: readonly string[] = SDK_FILES.filter((f) => /\.(c|S)$/.test(f)).sort();

/** Largest SDK file accepted from a server (the real ones are below 32 KiB). */
const MAX_SDK_FILE_SIZE = 1024 * 1024;

/**
 * The gcc flags for a guest, run with `sdkDir` as the working directory; sources and `-o` follow. Paths are
 * relative to `sdkDir`, and `-ffile-prefix-map` keeps `sdkDir` out of the output, so the bytes depend only on
 * the sources and the gcc version. guest/README.md explains each flag.
 *
 * @param sdkDir Absolute path of a directory holding {@linkcode SDK_FILES}.
 * @returns The flags, in a fixed order.
 *
 * @example
 * ```ts
 * import { guestCflags } from "./sdk.ts";
 * console.log(guestCflags("/tmp/sdk").includes("-ffreestanding")); // true
 * ```
 */
export function guestCflags(sdkDir: string): string[] {
  return [
    "-std=gnu11",
    "-O2",
    "-g0",
    "-Wall",
    "-Wextra",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-fno-pie",
    "-no-pie",
    "-fno-stack-protector",
    "-fstack-clash-protection",
    "-fcf-protection=none",
    "-mno-red-zone",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-tree-loop-distribute-patterns",
    `-ffile-prefix-map=${sdkDir}=.`,
    "-Wl,--build-id=none",
    "-Wl,-z,max-page-size=4096",
    "-Wl,-z,noexecstack",
    "-Wl,--orphan-handling=warn",
    "-Wl,-T,link.ld",
    "-I",
    "include",
  ];
}

/**
 * gcc could not be started because it is not installed (or not on `PATH`). The message says how to
 * install it on this Linux distribution.
 *
 * @example
 * ```ts
 * import { GccNotFoundError } from "./sdk.ts";
 * console.log(new GccNotFoundError("gcc").message.startsWith("gcc not found")); // true
 * ```
 */
export class GccNotFoundError extends SnapvmError {
  /** The command that was looked for. */
  readonly command: string;

  /**
   * Creates the error; the message includes the install command for this distribution.
   *
   * @param command The gcc command that could not be started.
   */
  constructor(command: string, options?: ErrorOptions) {
    super(`${command} not found: install it (${gccInstallHint()}) or put it on PATH`, options);
    this.name = "GccNotFoundError";
    this.command = command;
  }
}

/**
 * gcc ran and failed: a compile or link error in the guest. `log` holds gcc's output.
 *
 * @example
 * ```ts
 * import { GuestBuildError } from "./sdk.ts";
 * const e = new GuestBuildError(["gcc", "x.c"], "x.c:1: error: …");
 * console.log(e.log);
 * ```
 */
export class GuestBuildError extends SnapvmError {
  /** The gcc command line. */
  readonly command: string[];
  /** gcc's stderr and stdout. */
  readonly log: string;

  /**
   * Creates the error; the message quotes gcc's first error line.
   *
   * @param command The gcc command line.
   * @param log gcc's output.
   */
  constructor(command: string[], log: string) {
    const first = log.split("\n").find((l) => /error/i.test(l)) ?? log.split("\n")[0] ?? "";
    super(`Cannot build guest: gcc failed: ${first.trim() || "no output"}`);
    this.name = "GuestBuildError";
    this.command = command;
    this.log = log;
  }
}

/**
 * A guest binary or an SDK file could not be read: HTTP error, missing file, or larger than the limit.
 *
 * @example
 * ```ts
 * import { PackageFileError } from "./sdk.ts";
 * console.log(new PackageFileError("https://example.com/g", "HTTP 404 Not Found").message);
 * // "Cannot read https://example.com/g: HTTP 404 Not Found"
 * ```
 */
export class PackageFileError extends SnapvmError {
  /** The URL or path that was read. */
  readonly url: string;

  /**
   * Creates the error: `Cannot read <url>: <reason>`.
   *
   * @param url The URL or path.
   * @param reason What went wrong.
   */
  constructor(url: string, reason: string, options?: ErrorOptions) {
    super(`Cannot read ${url}: ${reason}`, options);
    this.name = "PackageFileError";
    this.url = url;
  }
}

/** Distribution families and their install command for gcc, matched against os-release `ID`/`ID_LIKE`. */
const INSTALL_COMMANDS: readonly [ids: readonly string[], label: string, command: string][] = [
  [["debian", "ubuntu"], "Debian/Ubuntu", "apt-get install gcc"],
  [["fedora", "rhel", "centos"], "Fedora/RHEL", "dnf install gcc"],
  [["alpine"], "Alpine", "apk add gcc"],
  [["arch"], "Arch", "pacman -S gcc"],
  [["suse", "opensuse"], "openSUSE", "zypper install gcc"],
];

/**
 * How to install gcc here: the command for this distribution when `/etc/os-release` can be read (and read
 * permission is already granted: this never prompts), otherwise the commands for the common ones.
 *
 * @param osRelease The contents of os-release; read from `/etc/os-release` when omitted.
 * @returns E.g. `"apt-get install gcc"`.
 *
 * @example
 * ```ts
 * import { gccInstallHint } from "./sdk.ts";
 * console.log(gccInstallHint('ID=fedora\n')); // "dnf install gcc"
 * ```
 */
export function gccInstallHint(osRelease?: string): string {
  const text = osRelease ?? readOsRelease();
  const ids = (text ?? "").split("\n")
    .filter((l) => l.startsWith("ID=") || l.startsWith("ID_LIKE="))
    .flatMap((l) => l.slice(l.indexOf("=") + 1).replace(/"/g, "").split(/\s+/));
  const match = INSTALL_COMMANDS.find(([family]) => family.some((id) => ids.includes(id)));
  if (match !== undefined) return match[2];
  return INSTALL_COMMANDS.map(([, label, command]) => `${label}: ${command}`).join("; ");
}

function readOsRelease(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "read", path: "/etc/os-release" }).state !== "granted") return;
    return Deno.readTextFileSync("/etc/os-release");
  } catch {
    return undefined;
  }
}

/**
 * Whether `gcc` (or the given command) can be run.
 *
 * @param gcc The command.
 * @returns `true` when `gcc --version` succeeds.
 *
 * @example
 * ```ts
 * import { haveGcc } from "./sdk.ts";
 * console.log(await haveGcc());
 * ```
 */
export async function haveGcc(gcc = "gcc"): Promise<boolean> {
  try {
    const r = await new Deno.Command(gcc, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * Reads `url` (`file:`, `http:` or `https:`) into memory, refusing more than `limit` bytes.
 * `file:` goes through `Deno.readFile`, which also reads files embedded by `deno compile --include`.
 */
async function readUrl(url: URL, limit: number): Promise<Uint8Array> {
  if (url.protocol === "file:") {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(url);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new PackageFileError(url.href, "no such file", { cause: e });
      }
      throw e;
    }
    if (bytes.length > limit) throw new PackageFileError(url.href, `${bytes.length} bytes, limit ${limit}`);
    return bytes;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new PackageFileError(
      url.href,
      `unsupported protocol ${url.protocol}, expected file:, http: or https:`,
    );
  }
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) throw e;
    throw new PackageFileError(url.href, e instanceof Error ? e.message : String(e), { cause: e });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new PackageFileError(url.href, `HTTP ${res.status} ${res.statusText}`.trim());
  }
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await res.body?.cancel();
    throw new PackageFileError(url.href, `${declared} bytes, limit ${limit}`);
  }
  // Read chunk by chunk so a server that lies about the length cannot make us buffer more than the limit.
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body ?? []) {
    total += chunk.length;
    if (total > limit) {
      throw new PackageFileError(url.href, `more than ${limit} bytes, limit ${limit}`);
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Writes the SDK ({@linkcode SDK_FILES}) into `dir`, reading the files from wherever this module was loaded
 * (a checkout, JSR, any `https:` server). Needs read permission for a `file:` package and net permission
 * for the package's host otherwise, and write permission for `dir`.
 *
 * @param dir An existing directory.
 * @returns The paths written.
 *
 * @example
 * ```ts ignore
 * import { writeSdk } from "./sdk.ts";
 * await writeSdk(await Deno.makeTempDir());
 * ```
 */
export async function writeSdk(dir: string): Promise<string[]> {
  const base = new URL("./", import.meta.url);
  const files = await Promise.all(SDK_FILES.map((f) => readUrl(new URL(f, base), MAX_SDK_FILE_SIZE)));
  const paths: string[] = [];
  for (const [i, f] of SDK_FILES.entries()) {
    const path = `${dir}/${f}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(path, files[i]);
    paths.push(path);
  }
  return paths;
}

/**
 * Options of {@linkcode buildGuest}.
 *
 * @example
 * ```ts
 * import type { BuildGuestOptions } from "./sdk.ts";
 * const options: BuildGuestOptions = { flags: ["-DNDEBUG"] };
 * ```
 */
export interface BuildGuestOptions {
  /** The gcc command; default `"gcc"`. */
  gcc?: string;
  /** Extra gcc flags, placed before the sources (e.g. `-I`, `-D`). */
  flags?: readonly string[];
}

/**
 * The result of {@linkcode buildGuest}.
 *
 * @example
 * ```ts
 * import type { BuildGuestResult } from "./sdk.ts";
 * const r: BuildGuestResult = { output: "/abs/guest.elf", command: ["gcc"], warnings: "" };
 * ```
 */
export interface BuildGuestResult {
  /** Absolute path of the guest binary. */
  output: string;
  /** The gcc command line that ran. */
  command: string[];
  /** gcc's output (warnings); empty when clean. */
  warnings: string;
}

/**
 * Builds a guest from C (or assembly) sources with the SDK shipped in this package: writes the SDK into a
 * temporary directory, runs gcc there, removes the directory. Source paths are relative to the current
 * directory; a source's own `#include "…"` files are found next to it as usual.
 *
 * Throws {@linkcode GccNotFoundError} without gcc, {@linkcode GuestBuildError} when gcc fails, and
 * {@linkcode PackageFileError} when the SDK cannot be read. Permissions: `--allow-run=gcc`, read for the
 * sources (and the package when it is local), write for the output and the temporary directory, and net
 * for the package's host when it was loaded over `https:`.
 *
 * @param sources The guest's sources (at least one).
 * @param output Path of the guest binary to write.
 * @param options See {@linkcode BuildGuestOptions}.
 * @returns Where the binary is, the command and any warnings.
 *
 * @example
 * ```ts ignore
 * import { buildGuest } from "./sdk.ts";
 * const { output, warnings } = await buildGuest(["guest.c"], "guest.elf");
 * ```
 */
export async function buildGuest(
  sources: readonly string[],
  output: string,
  options: BuildGuestOptions = {},
): Promise<BuildGuestResult> {
  if (sources.length === 0) throw new TypeError("buildGuest needs at least one source file");
  const cwd = Deno.cwd();
  const abs = (p: string) => (p.startsWith("/") ? p : `${cwd}/${p}`);
  const gcc = options.gcc ?? "gcc";
  const sdk = await Deno.makeTempDir({ prefix: "snapvm-sdk-" });
  try {
    await writeSdk(sdk);
    const command = [
      gcc,
      ...guestCflags(sdk),
      `-ffile-prefix-map=${cwd}=.`,
      ...(options.flags ?? []),
      ...RUNTIME_SOURCES,
      ...sources.map(abs),
      "-lgcc",
      "-o",
      abs(output),
    ];
    let r: Deno.CommandOutput;
    try {
      r = await new Deno.Command(gcc, { args: command.slice(1), cwd: sdk, stdout: "piped", stderr: "piped" })
        .output();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new GccNotFoundError(gcc, { cause: e });
      throw e;
    }
    const log = new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout);
    if (!r.success) throw new GuestBuildError(command, log);
    return { output: abs(output), command, warnings: log };
  } finally {
    await Deno.remove(sdk, { recursive: true }).catch(() => {});
  }
}

/** The example guests shipped in the package (`guest/bin/`). */
export type ExampleGuest = "hello" | "testguest";

/**
 * The URL of an example guest binary shipped in the package: `hello` (`Hello(string) -> string`,
 * `Twice(i64) -> i64`) or `testguest` (the test suite's guest; see guest/README.md). Pass it to
 * {@linkcode loadGuest}.
 *
 * @param name The guest.
 * @returns Its URL next to this module (`file:` or `https:`).
 *
 * @example
 * ```ts
 * import { exampleGuestUrl } from "./sdk.ts";
 * console.log(exampleGuestUrl("hello").pathname.endsWith("/bin/hello")); // true
 * ```
 */
export function exampleGuestUrl(name: ExampleGuest): URL {
  if (name !== "hello" && name !== "testguest") {
    throw new TypeError(`No example guest "${String(name)}": expected "hello" or "testguest"`);
  }
  return new URL(`./bin/${name}`, import.meta.url);
}

/**
 * Reads a guest binary from a path or a `file:`, `http:` or `https:` URL into memory, for
 * `new UninitializedSandbox(bytes)`; refuses anything larger than the largest image the loader accepts
 * (64 MiB). Throws {@linkcode PackageFileError} when it cannot be read.
 *
 * @param guest A path (relative to the current directory) or a URL.
 * @returns The file's bytes.
 *
 * @example
 * ```ts ignore
 * import { exampleGuestUrl, loadGuest } from "@snapvm/snapvm/guest";
 * import { UninitializedSandbox } from "@snapvm/snapvm";
 *
 * using sbx = new UninitializedSandbox(await loadGuest(exampleGuestUrl("hello"))).evolve();
 * console.log(sbx.call("Hello", "world")); // "Hello, world!"
 * ```
 */
export async function loadGuest(guest: string | URL): Promise<Uint8Array> {
  const url = guest instanceof URL ? guest : /^(file|https?):/i.test(guest) ? new URL(guest) : undefined;
  if (url !== undefined) return await readUrl(url, MAX_IMAGE_SIZE);
  try {
    const info = await Deno.stat(guest as string);
    if (info.size > MAX_IMAGE_SIZE) {
      throw new PackageFileError(guest as string, `${info.size} bytes, limit ${MAX_IMAGE_SIZE}`);
    }
    return await Deno.readFile(guest as string);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PackageFileError(guest as string, "no such file", { cause: e });
    }
    throw e;
  }
}
