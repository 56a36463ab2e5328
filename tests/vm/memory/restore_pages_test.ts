/**
 * Restore's page work (vm/memory/restore_pages.ts, vm/memory/_restore_pages.c): the committed library
 * matches a fresh build, loads where the system allows it, and does exactly what the JavaScript version
 * does on random bitmaps.
 */
import assert from "node:assert/strict";
import { Mapping } from "../../../vm/memory/mapping.ts";
import { forEachRun, PageRestorer } from "../../../vm/memory/restore_pages.ts";
import { restoreLibrary, useNativeRestore } from "../../../vm/memory/restore_library.ts";
import { RESTORE_PAGES_LIBRARY } from "../../../vm/memory/_restore_pages_library.ts";
import { buildRestorePages, renderRestorePagesModule } from "../../../vm/memory/build_restore_pages.ts";
import { openLibraryFromBytes } from "../../../ffi/linux/library_from_bytes.ts";

const PAGE = 4096;
const LINUX_X64 = Deno.build.os === "linux" && Deno.build.arch === "x86_64";

async function haveGcc(): Promise<boolean> {
  try {
    return (await new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** `vm.memfd_noexec`: 2 refuses executable memfds, where the library cannot load (documented fallback). */
function memfdNoexec(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/vm/memfd_noexec").trim());
  } catch {
    return 0;
  }
}

Deno.test("rebuilding the restore library from _restore_pages.c gives the committed module byte for byte", async () => {
  if (!(await haveGcc())) {
    if (Deno.env.get("CI") === "true") throw new Error("gcc is missing");
    console.error("!!! gcc not found: SKIPPING the restore-library rebuild comparison !!!");
    return;
  }
  const rebuilt = await buildRestorePages();
  if (rebuilt.toolchain !== RESTORE_PAGES_LIBRARY.toolchain) {
    const message =
      `toolchain is "${rebuilt.toolchain}", the library was built with "${RESTORE_PAGES_LIBRARY.toolchain}"`;
    if (Deno.env.get("CI") === "true") throw new Error(message);
    console.error(`!!! ${message}: SKIPPING the byte-for-byte comparison !!!`);
    return;
  }
  assert.equal(
    renderRestorePagesModule(rebuilt),
    await Deno.readTextFile(new URL("../../../vm/memory/_restore_pages_library.ts", import.meta.url)),
    "vm/memory/_restore_pages_library.ts differs from a rebuild: run deno run -A vm/memory/build_restore_pages.ts",
  );
});

Deno.test({
  name: "the restore library loads on Linux x86-64 unless executable memfds are refused",
  ignore: !LINUX_X64,
  fn() {
    const lib = restoreLibrary();
    if (memfdNoexec() >= 2) {
      assert.equal(lib, undefined, "vm.memfd_noexec=2: the JavaScript version is used");
      console.error(
        "!!! vm.memfd_noexec=2: the native restore library cannot load here (fallback tested) !!!",
      );
    } else {
      assert.ok(lib !== undefined);
    }
  },
});

Deno.test({
  name: "a shared object that does not load gives undefined, not an exception",
  ignore: Deno.build.os !== "linux",
  fn() {
    const junk = new Uint8Array(4096).fill(0x90);
    assert.equal(
      openLibraryFromBytes("snapvm-test-junk", junk, { f: { parameters: [], result: "void" } }),
      undefined,
    );
  },
});

Deno.test("forEachRun splits runs at clean pages, at `split` and at the range's ends", () => {
  const runs: number[][] = [];
  const bitmap = new BigUint64Array([~0n, 0b1011n, 0n, 1n << 63n]);
  forEachRun(bitmap, 3, 256, 60, (a, b) => runs.push([a, b]));
  assert.deepEqual(runs, [[3, 60], [60, 66], [67, 68], [255, 256]]);
  runs.length = 0;
  forEachRun(bitmap, 0, 1000, Infinity, (a, b) => runs.push([a, b])); // past the bitmap: clean
  assert.deepEqual(runs, [[0, 66], [67, 68], [255, 256]]);
});

/** A small xorshift generator: the same cases on every run. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Runs one case with the native library on or off; returns the guest memory afterwards and the count. */
function runCase(native: boolean, c: {
  dirty: BigUint64Array;
  persistentPages: number;
  scratchFirst: number;
  scratchPages: number;
  systemEnd: number;
  zeroScratch: boolean;
}): { memory: Uint8Array; copied: number } {
  const before = useNativeRestore(native);
  try {
    const total = c.scratchFirst + c.scratchPages;
    using guest = Mapping.reserve(total * PAGE);
    using system = Mapping.reserve(c.systemEnd * PAGE + PAGE);
    using blob = Mapping.reserve(c.persistentPages * PAGE);
    for (let p = 0; p < total; p++) guest.bytes.fill(0x11 + (p % 200), p * PAGE, (p + 1) * PAGE);
    system.bytes.fill(0xaa);
    for (let p = 0; p < c.persistentPages; p++) blob.bytes.fill(0x40 + (p % 100), p * PAGE, (p + 1) * PAGE);
    const restorer = new PageRestorer(
      guest.part(0, c.persistentPages * PAGE),
      guest.part(c.scratchFirst * PAGE, c.scratchPages * PAGE),
      c.scratchFirst,
    );
    const copied = restorer.restore(c.dirty, system, blob, c.systemEnd, c.zeroScratch);
    return { memory: guest.bytes.slice(), copied };
  } finally {
    useNativeRestore(before);
  }
}

Deno.test({
  name: "the native page restore does exactly what the JavaScript version does (300 random bitmaps)",
  ignore: !LINUX_X64 || memfdNoexec() >= 2,
  fn() {
    const rand = random(0x5eed);
    for (let i = 0; i < 300; i++) {
      const persistentPages = 1 + Math.floor(rand() * 200);
      const scratchFirst = persistentPages + 1 + Math.floor(rand() * 3); // a guard gap, as in guest memory
      const scratchPages = 1 + Math.floor(rand() * 40);
      const pages = scratchFirst + scratchPages + Math.floor(rand() * 70); // bits past the end stay unused
      // A bitmap shorter than the memory now and then: pages past its end are clean.
      const dirty = new BigUint64Array(Math.ceil(pages / 64) - (rand() < 0.1 ? 1 : 0));
      const density = rand();
      for (let p = 0; p < dirty.length * 64; p++) {
        if (rand() < density) dirty[p >>> 6] |= 1n << BigInt(p & 63);
      }
      const c = {
        dirty,
        persistentPages,
        scratchFirst,
        scratchPages,
        systemEnd: Math.floor(rand() * (persistentPages + 2)),
        zeroScratch: rand() < 0.8,
      };
      const js = runCase(false, c), native = runCase(true, c);
      assert.equal(native.copied, js.copied, `case ${i}: pages copied`);
      assert.ok(native.memory.every((b, k) => b === js.memory[k]), `case ${i}: memory differs`);
    }
  },
});

Deno.test("restoring from a closed or too small source is refused in both versions", () => {
  for (const native of [true, false]) {
    const before = useNativeRestore(native);
    try {
      using guest = Mapping.reserve(4 * PAGE),
        small = Mapping.reserve(PAGE),
        blob = Mapping.reserve(2 * PAGE);
      const restorer = new PageRestorer(guest.part(0, 2 * PAGE), guest.part(3 * PAGE, PAGE), 3);
      const dirty = new BigUint64Array([0b11n]);
      assert.throws(() => restorer.restore(dirty, blob, small, 1, true), /sources of/);
      assert.throws(() => restorer.restore(dirty, small, blob, 2, true), /sources of/);
      const closed = Mapping.reserve(2 * PAGE);
      closed.close();
      assert.throws(() => restorer.restore(dirty, closed, blob, 1, true), /closed/);
      assert.equal(restorer.restore(dirty, blob, blob, 1, true), 2);
    } finally {
      useNativeRestore(before);
    }
  }
});
