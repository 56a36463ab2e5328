/**
 * A shared object carried as bytes, opened with `Deno.dlopen`: written into a memfd and loaded from
 * `/proc/self/fd/N`, so that nothing is written to disk and the package needs no build step. Its functions
 * are then FFI fast calls (~20 ns a call), which machine code called through `Deno.UnsafeFnPointer` is not
 * (~1.5 µs a call): for small, frequent work such as a restore's page copies.
 *
 * Where the kernel refuses an executable memfd (`vm.memfd_noexec=2`), `/proc` is not mounted or `dlopen`
 * fails, {@linkcode openLibraryFromBytes} returns undefined and the caller uses its JavaScript version of
 * the same work. The library stays loaded until closed; a Worker's libraries are closed with the Worker.
 *
 * @module
 */
import { lastErrno } from "./errno.ts";
import { libc, MFD_CLOEXEC, MFD_EXEC } from "./libc.ts";

const EINVAL = 22;
const encoder = new TextEncoder();

/**
 * Opens `bytes` (an ELF shared object for this machine) as a library with `symbols`; undefined where the
 * system does not allow it (see the module comment).
 *
 * @param name The memfd's name (shown in `/proc/self/maps` as `/memfd:<name>`).
 * @param bytes The shared object.
 * @param symbols The functions to bind, as for `Deno.dlopen`.
 *
 * @example
 * ```ts ignore
 * import { openLibraryFromBytes } from "./library_from_bytes.ts";
 * const lib = openLibraryFromBytes("snapvm-example", soBytes, { f: { parameters: [], result: "u64" } });
 * console.log(lib?.symbols.f());
 * ```
 */
export function openLibraryFromBytes<S extends Deno.ForeignLibraryInterface>(
  name: string,
  bytes: Uint8Array,
  symbols: S,
): Deno.DynamicLibrary<S> | undefined {
  if (Deno.build.os !== "linux") return undefined;
  const c = libc();
  const cname = encoder.encode(`${name}\0`);
  let fd = c.memfd_create(cname, MFD_CLOEXEC | MFD_EXEC);
  if (fd < 0 && lastErrno() === EINVAL) fd = c.memfd_create(cname, MFD_CLOEXEC);
  if (fd < 0) return undefined;
  // The fd lives only within this synchronous function, which no Worker termination can interrupt; the
  // loader keeps its own mapping of the file once dlopen returns.
  try {
    for (let done = 0; done < bytes.length;) {
      const n = Number(c.pwrite_buf(fd, bytes.subarray(done), BigInt(bytes.length - done), BigInt(done)));
      if (n <= 0) return undefined;
      done += n;
    }
    try {
      return Deno.dlopen(`/proc/self/fd/${fd}`, symbols);
    } catch {
      return undefined; // noexec memfd, no /proc, a loader that refuses it: the caller falls back
    }
  } finally {
    c.close(fd);
  }
}
