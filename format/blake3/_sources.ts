/**
 * What the BLAKE3 build scripts share: finding the official C sources that Debian's `librust-blake3-dev`
 * installs (`/usr/share/cargo/registry/blake3-<version>/c/`). Build time only; not part of the published
 * package.
 *
 * @module
 */

/** Where Debian's `librust-*-dev` packages put their crate sources. */
export const CARGO_REGISTRY = "/usr/share/cargo/registry";

/**
 * Joins path segments with `/`, collapsing repeated separators.
 *
 * @param parts Path segments.
 * @returns The joined path.
 *
 * @example
 * ```ts
 * import { joinPath } from "./_sources.ts";
 *
 * console.log(joinPath("/a/", "b")); // "/a/b"
 * ```
 */
export function joinPath(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}

/**
 * Makes `path` absolute against the current directory.
 *
 * @param path A relative or absolute path.
 * @returns The absolute path.
 *
 * @example
 * ```ts
 * import { absolutePath } from "./_sources.ts";
 *
 * console.log(absolutePath("/tmp")); // "/tmp"
 * ```
 */
export function absolutePath(path: string): string {
  return path.startsWith("/") ? path : joinPath(Deno.cwd(), path);
}

/**
 * Whether `path` exists.
 *
 * @param path A path.
 * @returns `true` when it can be `stat`ed.
 * @throws Other errors than "not found" (such as a missing read permission).
 *
 * @example
 * ```ts
 * import { pathExists } from "./_sources.ts";
 *
 * console.log(pathExists("/nonexistent")); // false
 * ```
 */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Compares dotted version strings numerically, so that `1.10.0` sorts after `1.9.2` (a string sort would
 * not).
 *
 * @param a A version.
 * @param b Another version.
 * @returns Negative, zero or positive, like a sort comparator.
 *
 * @example
 * ```ts
 * import { compareVersions } from "./_sources.ts";
 *
 * console.log(compareVersions("1.10.0", "1.9.2") > 0); // true
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
  const pb = b.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const difference = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/**
 * Finds the newest BLAKE3 C source folder that Debian's `librust-blake3-dev` installed.
 *
 * @returns The `c/` folder, or `null` when there is none.
 *
 * @example
 * ```ts
 * import { findBlake3Sources } from "./_sources.ts";
 *
 * console.log(findBlake3Sources() ?? "librust-blake3-dev is not installed");
 * ```
 */
export function findBlake3Sources(): string | null {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(CARGO_REGISTRY)];
  } catch {
    return null;
  }
  const versions = entries
    .filter((entry) => /^blake3-\d/.test(entry.name))
    .map((entry) => entry.name.slice("blake3-".length))
    .sort(compareVersions)
    .reverse();
  for (const version of versions) {
    const dir = joinPath(CARGO_REGISTRY, `blake3-${version}`, "c");
    if (pathExists(joinPath(dir, "blake3.c"))) return dir;
  }
  return null;
}

/**
 * The BLAKE3 version of a source folder, from the `BLAKE3_VERSION_STRING` in its `blake3.h`.
 *
 * @param sourceDir The BLAKE3 `c/` folder.
 * @returns The version, such as `1.3.1`.
 * @throws If `blake3.h` is missing or has no version string.
 *
 * @example
 * ```ts ignore
 * import { blake3SourceVersion, findBlake3Sources } from "./_sources.ts";
 *
 * console.log(blake3SourceVersion(findBlake3Sources()!)); // "1.3.1"
 * ```
 */
export function blake3SourceVersion(sourceDir: string): string {
  const header = Deno.readTextFileSync(joinPath(sourceDir, "blake3.h"));
  const match = header.match(/#define\s+BLAKE3_VERSION_STRING\s+"([^"]+)"/);
  if (match === null) throw new Error(`No BLAKE3_VERSION_STRING in ${joinPath(sourceDir, "blake3.h")}`);
  return match[1];
}
