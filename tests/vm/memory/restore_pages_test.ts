/**
 * Restore's page work (vm/memory/restore_pages.ts, vm/memory/_restore_pages.c): the committed library
 * matches a fresh build, loads where the system allows it, and does exactly what the JavaScript version
 * does on random bitmaps.
 */
import assert from "node:assert/strict";
import { Mapping } from "../../../vm/memory/mapping.ts";
import { forEachRun, PageRestorer, PLAN, type RestoreTargets } from "../../../vm/memory/restore_pages.ts";
import { restoreLibrary, RING, useNativeRestore } from "../../../vm/memory/restore_library.ts";
import { RESTORE_PAGES_LIBRARY } from "../../../vm/memory/_restore_pages_library.ts";
import { buildRestorePages, renderRestorePagesModule } from "../../../vm/memory/build_restore_pages.ts";
import { openLibraryFromBytes } from "../../../ffi/linux/library_from_bytes.ts";
import { DIRTY_RING } from "../../../ffi/linux/kvm.ts";
import { gccOrSkip, sameToolchain } from "../../_rebuild.ts";

const PAGE = 4096;
const LINUX_X64 = Deno.build.os === "linux" && Deno.build.arch === "x86_64";

/** `vm.memfd_noexec`: 2 refuses executable memfds, where the library cannot load (documented fallback). */
function memfdNoexec(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/vm/memfd_noexec").trim());
  } catch {
    return 0;
  }
}

Deno.test("rebuilding the restore library from _restore_pages.c gives the committed module byte for byte", async () => {
  if (!(await gccOrSkip("the restore-library rebuild comparison"))) return;
  const rebuilt = await buildRestorePages();
  if (!sameToolchain(rebuilt.toolchain, RESTORE_PAGES_LIBRARY.toolchain, "the library")) return;
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

/** One random case: memory sizes, a dirty bitmap, the host-written lengths. */
interface Case {
  dirty: BigUint64Array;
  persistentPages: number;
  scratchFirst: number;
  scratchPages: number;
  systemEnd: number;
  zeroScratch: boolean;
  inputWritten: number;
  outputWritten: number;
}

/** The host buffers of a case: the first and the last page of its scratch region (one page if it has one). */
function buffers(c: Case): RestoreTargets["hostBuffers"] {
  return [{ offset: 0, length: PAGE }, { offset: (c.scratchPages - 1) * PAGE, length: PAGE }];
}

/** Fresh bytes for the info range, the same in both versions. */
const FRESH = new Uint8Array(40).map((_, i) => 0xc0 + i);
const FRESH_ADDRESS = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(FRESH)));

/** Runs one case with the native library on or off; returns the guest memory afterwards and the count. */
function runCase(native: boolean, c: Case): { memory: Uint8Array; copied: number } {
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
      { hostBuffers: buffers(c), fresh: { offset: 100, length: FRESH.length } },
    );
    const copied = restorer.restore({
      dirty: c.dirty,
      ring: undefined,
      system,
      blob,
      systemEnd: c.systemEnd,
      zeroScratch: c.zeroScratch,
      inputWritten: c.inputWritten,
      outputWritten: c.outputWritten,
      fresh: FRESH_ADDRESS,
      staging: undefined,
    });
    return { memory: guest.bytes.slice(), copied };
  } finally {
    useNativeRestore(before);
  }
}

Deno.test({
  name: "the native page restore does exactly what the JavaScript version does (300 random cases)",
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
      const c: Case = {
        dirty,
        persistentPages,
        scratchFirst,
        scratchPages,
        systemEnd: Math.floor(rand() * (persistentPages + 2)),
        zeroScratch: rand() < 0.8,
        inputWritten: Math.floor(rand() * (PAGE + 1)),
        outputWritten: Math.floor(rand() * (PAGE + 1)),
      };
      const js = runCase(false, c), native = runCase(true, c);
      assert.equal(native.copied, js.copied, `case ${i}: pages copied`);
      assert.ok(native.memory.every((b, k) => b === js.memory[k]), `case ${i}: memory differs`);
      assert.deepEqual(native.memory.subarray(100, 100 + FRESH.length), FRESH, `case ${i}: fresh bytes`);
    }
  },
});

Deno.test("a closed or too small source, or a host write past its buffer, is refused in both versions", () => {
  for (const native of [true, false]) {
    const before = useNativeRestore(native);
    try {
      using guest = Mapping.reserve(4 * PAGE),
        small = Mapping.reserve(PAGE),
        blob = Mapping.reserve(2 * PAGE);
      const restorer = new PageRestorer(guest.part(0, 2 * PAGE), guest.part(3 * PAGE, PAGE), 3, {
        hostBuffers: [{ offset: 0, length: 1024 }, { offset: 1024, length: 1024 }],
        fresh: { offset: 0, length: FRESH.length },
      });
      const dirty = new BigUint64Array([0b11n]);
      const restore = (system: Mapping, source: Mapping, systemEnd: number, written = 0) =>
        restorer.restore({
          dirty,
          ring: undefined,
          system,
          blob: source,
          systemEnd,
          zeroScratch: true,
          inputWritten: written,
          outputWritten: 0,
          fresh: FRESH_ADDRESS,
          staging: undefined,
        });
      assert.throws(() => restore(blob, small, 1), /sources of/);
      assert.throws(() => restore(small, blob, 2), /sources of/);
      assert.throws(() => restore(blob, blob, 1, 1025), /host wrote 1025/);
      const closed = Mapping.reserve(2 * PAGE);
      closed.close();
      assert.throws(() => restore(closed, blob, 1), /closed/);
      assert.equal(restore(blob, blob, 1), 2);
    } finally {
      useNativeRestore(before);
    }
  }
  using one = Mapping.reserve(PAGE), other = Mapping.reserve(PAGE);
  assert.throws(
    () =>
      new PageRestorer(one, other, 2, {
        hostBuffers: [{ offset: 0, length: PAGE }, { offset: PAGE, length: 1 }],
        fresh: { offset: 0, length: 8 },
      }),
    /host buffer 4096\+1 is outside its region/,
  );
});

Deno.test({
  name: "the native call makes a register staging last: the block copied, the flag bits set, nothing else",
  ignore: !LINUX_X64 || memfdNoexec() >= 2,
  fn() {
    using guest = Mapping.reserve(2 * PAGE), blob = Mapping.reserve(PAGE), target = Mapping.reserve(PAGE);
    const restorer = new PageRestorer(guest.part(0, PAGE), guest.part(PAGE, PAGE), 1, {
      hostBuffers: [{ offset: 0, length: 8 }, { offset: 8, length: 8 }],
      fresh: { offset: 0, length: FRESH.length },
    });
    const block = new Uint8Array(new ArrayBuffer(456)).map((_, i) => i & 0xff);
    target.bytes.fill(0xee);
    target.view.setUint32(1024, 0x100, true);
    const staging = {
      to: Number(target.address) + 8,
      from: Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(block))),
      length: block.length,
      flagsAt: Number(target.address) + 1024,
      flags: 3,
    };
    const request = {
      dirty: new BigUint64Array(1),
      ring: undefined,
      system: blob,
      blob,
      systemEnd: 0,
      zeroScratch: true,
      inputWritten: 0,
      outputWritten: 0,
      fresh: FRESH_ADDRESS,
      staging,
    };
    assert.equal(restorer.restore(request), 0);
    assert.deepEqual(target.bytes.subarray(8, 8 + block.length), block);
    assert.equal(target.bytes[7], 0xee);
    assert.equal(target.bytes[8 + block.length], 0xee);
    assert.equal(target.view.getUint32(1024, true), 0x103);
    // Without a staging, the next call leaves the target alone.
    target.bytes.fill(0);
    assert.equal(restorer.restore({ ...request, staging: undefined }), 0);
    assert.ok(target.bytes.every((b) => b === 0));
    // The JavaScript version has no staging to make: it refuses one.
    const before = useNativeRestore(false);
    try {
      assert.throws(() => restorer.restore(request), /without the native library/);
    } finally {
      useNativeRestore(before);
    }
  },
});

Deno.test("the plan and ring layouts match the C file's enums index for index", () => {
  const source = Deno.readTextFileSync(new URL("../../../vm/memory/_restore_pages.c", import.meta.url))
    .replace(/\/\/[^\n]*/g, ""); // comments name fields too
  const enumOf = (prefix: string) => {
    const body = [...source.matchAll(/enum \{([^}]*)\}/g)].map((m) => m[1]).find((b) => b.includes(prefix))!;
    const names = [...body.matchAll(new RegExp(`\\b${prefix}(\\w+)`, "g"))].map((m) => m[1]);
    return Object.fromEntries(names.map((name, i) => [name, i]));
  };
  assert.deepEqual(enumOf("P_"), PLAN);
  assert.deepEqual(enumOf("R_"), RING);
  // struct kvm_dirty_gfn and its flags, as ffi/linux/kvm.ts has them from linux/kvm.h.
  const define = (name: string) => Number(new RegExp(`#define ${name} (\\d+)u`).exec(source)![1]);
  assert.equal(define("KVM_DIRTY_GFN_F_DIRTY"), DIRTY_RING.F_DIRTY);
  assert.equal(define("KVM_DIRTY_GFN_F_RESET"), DIRTY_RING.F_RESET);
  assert.match(source, /struct dirty_gfn \{\s*uint32_t flags;\s*uint32_t slot;\s*uint64_t offset;\s*\}/);
  assert.deepEqual([DIRTY_RING.FLAGS, DIRTY_RING.SLOT, DIRTY_RING.OFFSET, DIRTY_RING.ENTRY], [0, 4, 8, 16]);
});
