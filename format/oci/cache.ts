/**
 * Where pulled snapshots are kept: a content-addressed directory, by default under Deno's cache directory.
 *
 * ```
 * CACHE/blobs/sha256/<hex>                  manifests, configs and snapshot layers, named by their SHA-256, read-only
 * CACHE/chains/sha256/<manifest hex>/       a delta's layers side by side (hard links to the blobs): each base
 *                                           under the file name the delta above it records, the top as <hex>.hls
 * ```
 *
 * A snapshot layer is a whole `.hls` file, so its cache path is what `Snapshot.fromFile` or
 * `Snapshot.fromFileCached` opens (for a delta, its link in the chain directory, where the loader finds the
 * bases next to it): the path never changes for the same content, which is what lets `fromFileCached` reuse
 * a verified load across pulls. Blobs are written to a temporary file, verified
 * (length and SHA-256), fsynced, and renamed into place, so a file that exists is complete; concurrent pulls
 * of the same snapshot are safe. Nothing is ever modified in place (loaded snapshots map the file).
 *
 * @module
 */

import { OciCacheError } from "./errors.ts";

/**
 * The default cache directory: `snapvm/oci` under Deno's cache directory (`DENO_DIR`, else
 * `$XDG_CACHE_HOME/deno` or `~/.cache/deno` on Linux, `~/Library/Caches/deno` on macOS,
 * `%LOCALAPPDATA%\deno` on Windows).
 *
 * @returns The directory (it may not exist yet).
 * @throws {OciCacheError} When none of those variables is set or environment access is denied.
 *
 * @example
 * ```ts ignore
 * import { defaultCacheDir } from "./cache.ts";
 *
 * console.log(defaultCacheDir()); // e.g. /home/me/.cache/deno/snapvm/oci
 * ```
 */
export function defaultCacheDir(): string {
  let env: (name: string) => string | undefined;
  try {
    Deno.env.get("HOME");
    env = (name) => Deno.env.get(name) || undefined;
  } catch (error) {
    throw new OciCacheError(
      `environment access is denied (${error instanceof Error ? error.message : error})`,
    );
  }
  let base = env("DENO_DIR");
  if (base === undefined) {
    if (Deno.build.os === "windows") {
      const local = env("LOCALAPPDATA");
      if (local !== undefined) base = `${local}\\deno`;
    } else if (Deno.build.os === "darwin") {
      const home = env("HOME");
      if (home !== undefined) base = `${home}/Library/Caches/deno`;
    } else {
      const xdg = env("XDG_CACHE_HOME");
      const home = env("HOME");
      if (xdg !== undefined) base = `${xdg}/deno`;
      else if (home !== undefined) base = `${home}/.cache/deno`;
    }
  }
  if (base === undefined) {
    throw new OciCacheError("neither DENO_DIR nor a home or cache directory variable is set");
  }
  return `${base}/snapvm/oci`;
}
