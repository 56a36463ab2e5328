/**
 * The native half of restore (`_restore_pages.c`, carried as bytes in `_restore_pages_library.ts`): loaded
 * once per thread with `Deno.dlopen` from a memfd (`ffi/linux/library_from_bytes.ts`) the first time a
 * restore needs it, so that its functions are FFI fast calls. Where it cannot be loaded (not Linux x86-64,
 * an executable memfd refused), {@linkcode restoreLibrary} returns undefined and the callers do the same work
 * in JavaScript (`restore_pages.ts`, `vm/kvm/dirty_ring.ts`); tests run both and compare.
 *
 * Measured on a PVM host: a restore after one dirty page spends ~1–2 µs in the JavaScript version of this
 * work, most of it in cache and TLB misses on the many objects and pages it touches right after a guest run
 * (which flushes the TLB); the native call touches only the bitmap, the pages it copies and its own code.
 *
 * @module
 */
import { openLibraryFromBytes } from "../../ffi/linux/library_from_bytes.ts";
import { RESTORE_PAGES_LIBRARY } from "./_restore_pages_library.ts";

/**
 * The functions. Results are declared `u32` (the C functions return u64 counts that never exceed a 32-bit
 * value: pages of one guest, entries of one ring) so that a call returns a number, not a bigint to allocate.
 */
const SYMBOLS = {
  /** `snapvm_restore_pages(plan, bitmap, ring)`: pages copied. */
  restorePages: { name: "snapvm_restore_pages", parameters: ["buffer", "buffer", "buffer"], result: "u32" },
  /** `snapvm_collect_dirty_ring(ring, bitmap)`: entries collected. */
  collectDirtyRing: { name: "snapvm_collect_dirty_ring", parameters: ["buffer", "buffer"], result: "u32" },
} as const;

/**
 * Writes `value` (a non-negative integer below 2^53) into u64 field `index` of a plan or ring state through
 * its 32-bit view: the fields set on every call are numbers, and a bigint per field would be an allocation
 * per field per restore.
 *
 * @example
 * ```ts
 * import { setU64 } from "./restore_library.ts";
 * const plan = new BigUint64Array(2);
 * setU64(new Uint32Array(plan.buffer), 1, 2 ** 40 + 7);
 * console.log(plan[1]); // 1099511627783n
 * ```
 */
export function setU64(words: Uint32Array, index: number, value: number): void {
  words[2 * index] = value % 0x1_0000_0000;
  words[2 * index + 1] = Math.floor(value / 0x1_0000_0000);
}

/**
 * A KVM dirty ring's state (u64 indexes), as `R_*` in `_restore_pages.c` declares it: the ring's host
 * address, its entry count (0: no ring to collect), the entries consumed so far (the ring index is this
 * modulo the count), the memslot recorded, the pages the bitmap has bits for, and the entries collected and
 * not yet reset. `vm/kvm/backend.ts` owns one per VM; restore's native call collects it.
 *
 * @example
 * ```ts
 * import { RING } from "./restore_library.ts";
 * const state = new BigUint64Array(RING.WORDS); // entries 0: nothing to collect
 * console.log(state[RING.ENTRIES]); // 0n
 * ```
 */
export const RING = { RING: 0, ENTRIES: 1, FETCH: 2, SLOT: 3, PAGES: 4, COLLECTED: 5, WORDS: 6 } as const;

/** The library's functions. */
export type RestoreLibrary = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | null | undefined;
let enabled = true;

/**
 * The native functions, loaded on first use; undefined where they cannot be loaded or are turned off.
 *
 * @example
 * ```ts
 * import { restoreLibrary } from "./restore_library.ts";
 * console.log(typeof restoreLibrary()); // "object" on Linux x86-64, else "undefined"
 * ```
 */
export function restoreLibrary(): RestoreLibrary | undefined {
  if (!enabled) return undefined;
  if (library === undefined) {
    library = Deno.build.arch === "x86_64"
      ? openLibraryFromBytes(
        "snapvm-restore",
        Uint8Array.fromBase64(RESTORE_PAGES_LIBRARY.base64),
        SYMBOLS,
      ) ?? null
      : null;
  }
  return library?.symbols;
}

/**
 * Turns the native functions off (`false`) or back on, for this thread: tests compare the two versions of
 * the work this way. Returns the previous setting.
 *
 * @example
 * ```ts
 * import { useNativeRestore } from "./restore_library.ts";
 * const before = useNativeRestore(false);
 * useNativeRestore(before);
 * ```
 */
export function useNativeRestore(on: boolean): boolean {
  const before = enabled;
  enabled = on;
  return before;
}
