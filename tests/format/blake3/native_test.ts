import assert from "node:assert/strict";
import { openHost } from "../../../ffi/executable.ts";
import { KERNEL_X86_64_SYSV } from "../../../format/blake3/_kernel_x86_64_sysv.ts";
import { KERNEL_X86_64_WIN64 } from "../../../format/blake3/_kernel_x86_64_win64.ts";
import {
  kernelImageFor,
  KernelLoadError,
  leafBytesFor,
  loadNativeKernel,
  MAX_THREADS,
  MIN_LEAF_BYTES,
  type NativeKernel,
  PARALLEL_MIN_BYTES,
} from "../../../format/blake3/_native.ts";
import {
  b3sum,
  BOUNDARY_LENGTHS,
  hex,
  OFFICIAL_VECTORS,
  pattern,
  pseudoRandom,
  toolTest,
} from "./_helpers.ts";

const MIB = 1 << 20;

let shared: NativeKernel | undefined;
/** One kernel for the whole file, as the module would use it (this machine is x86-64 Linux). */
function kernel(): NativeKernel {
  shared ??= loadNativeKernel();
  return shared;
}

Deno.test("the image for each OS and CPU", () => {
  assert.equal(kernelImageFor("linux", "x86_64"), KERNEL_X86_64_SYSV);
  assert.equal(kernelImageFor("windows", "x86_64"), KERNEL_X86_64_WIN64);
  assert.equal(kernelImageFor("darwin", "x86_64"), null);
  assert.equal(kernelImageFor("linux", "aarch64"), null);
  assert.equal(kernelImageFor("windows", "aarch64"), null);
});

Deno.test("the kernel loads, reports its version and threads, and gives the official digests", () => {
  const k = kernel();
  assert.equal(k.target, "x86_64-sysv");
  assert.equal(k.version, KERNEL_X86_64_SYSV.blake3Version);
  assert.equal(k.threads, Math.min(MAX_THREADS, navigator.hardwareConcurrency));
  for (const [length, expected] of OFFICIAL_VECTORS) {
    const data = pattern(length);
    assert.equal(hex(k.hash(data)), expected, `hash, ${length} bytes`);
    for (const threads of [1, 2, 3]) {
      assert.equal(
        hex(k.hashWith(data, threads, 1024)),
        expected,
        `${threads} threads, 1 KiB leaves, ${length}`,
      );
    }
  }
});

toolTest("every thread count and leaf size agrees with b3sum at every tree boundary", ["b3sum"], async () => {
  const k = kernel();
  for (const length of BOUNDARY_LENGTHS) {
    const data = pseudoRandom(length, length + 1);
    const expected = await b3sum(data);
    assert.equal(hex(k.hash(data)), expected, `hash(), ${length} bytes`);
    for (const leafBytes of [1024, 2048, 4096, 64 << 10, MIB]) {
      if (leafBytes >= length && leafBytes !== 1024) continue; // one leaf: the single-threaded path again
      for (const threads of [1, 2, 3, 4]) {
        assert.equal(
          hex(k.hashWith(data, threads, leafBytes)),
          expected,
          `${length} B, ${threads}x${leafBytes}`,
        );
      }
    }
  }
});

toolTest("hash() switches to threads at PARALLEL_MIN_BYTES with the same digests", ["b3sum"], async () => {
  const k = kernel();
  for (const length of [PARALLEL_MIN_BYTES - 1, PARALLEL_MIN_BYTES, PARALLEL_MIN_BYTES + 1, 37 * MIB + 3]) {
    const data = pseudoRandom(length, length);
    const expected = await b3sum(data);
    assert.equal(hex(k.hash(data)), expected, `hash(), ${length} bytes`);
    assert.equal(hex(k.hashWith(data, 1)), expected, `one thread, ${length} bytes`);
  }
});

Deno.test("leaf sizes: about 8 leaves per thread, a power of two, at least MIN_LEAF_BYTES", () => {
  assert.equal(leafBytesFor(256 * MIB, 2), 16 * MIB);
  assert.equal(leafBytesFor(256 * MIB, 4), 8 * MIB);
  assert.equal(leafBytesFor(255 * MIB, 2), 8 * MIB);
  assert.equal(leafBytesFor(PARALLEL_MIN_BYTES, 16), MIN_LEAF_BYTES);
  for (const length of [PARALLEL_MIN_BYTES, 944 * MIB]) {
    for (let threads = 2; threads <= MAX_THREADS; threads++) {
      const leaf = leafBytesFor(length, threads);
      assert.equal(leaf & (leaf - 1), 0);
      assert.ok(Math.ceil(length / leaf) >= 2, "at least two leaves, so the root is a parent node");
    }
  }
  assert.throws(() => kernel().hashWith(pattern(4096), 2, 1536), RangeError);
  assert.throws(() => kernel().hashWith(pattern(4096), 2, 512), RangeError);
});

Deno.test("when no helper thread can start, the calling thread hashes every leaf", () => {
  const host = openHost()!;
  let attempts = 0;
  const refusing = { ...host, startThread: () => (attempts++, null) };
  using k = loadNativeKernel({ host: refusing });
  const data = pseudoRandom(3 * MIB + 77, 5);
  const expected = hex(kernel().hashWith(data, 1));
  assert.equal(hex(k.hashWith(data, 4, 64 << 10)), expected);
  assert.equal(attempts, 1, "stops at the first refusal");

  // Only the first helper starts: it and the calling thread share the leaves.
  let started = 0;
  const once = {
    ...host,
    startThread: (
      ...args: Parameters<typeof host.startThread>
    ) => (started++ === 0 ? host.startThread(...args) : null),
  };
  using k2 = loadNativeKernel({ host: once });
  assert.equal(hex(k2.hashWith(data, 4, 64 << 10)), expected);
});

Deno.test("without thread support the kernel reports one thread and hashes large inputs on it", () => {
  const host = openHost()!;
  using k = loadNativeKernel({ host: { ...host, canStartThreads: false, startThread: () => null } });
  assert.equal(k.threads, 1);
  using one = loadNativeKernel({ maxThreads: 1 });
  assert.equal(one.threads, 1);
  const data = pseudoRandom(PARALLEL_MIN_BYTES + 5, 9);
  assert.equal(hex(k.hash(data)), hex(kernel().hash(data)));
  assert.equal(hex(one.hash(data)), hex(kernel().hash(data)));
});

Deno.test("views are hashed from their offset, and external memory in place (the mmap path)", () => {
  const k = kernel();
  const backing = pseudoRandom(6 * MIB, 3);
  const view = backing.subarray(4099, 4099 + 5 * MIB + 3);
  const copy = view.slice();
  assert.equal(hex(k.hash(view)), hex(k.hash(copy)));
  assert.equal(hex(k.hashWith(view, 2, 64 << 10)), hex(k.hashWith(copy, 1)));
  assert.equal(hex(k.hash(backing.subarray(100, 100))), OFFICIAL_VECTORS[0][1]);

  const pointer = Deno.UnsafePointer.of(backing)!;
  const external = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, backing.length));
  assert.equal(hex(k.hashWith(external, 2, MIB)), hex(k.hashWith(backing, 1)));
});

Deno.test("a kernel that fails its self-test is unmapped and refused", () => {
  assert.throws(
    () => loadNativeKernel({ kernel: { ...KERNEL_X86_64_SYSV, blake3Version: "0.0.0" } }),
    (error) =>
      error instanceof KernelLoadError &&
      /self-test failed: version 1\.3\.1, expected 0\.0\.0/.test(error.message),
  );
  assert.throws(() => loadNativeKernel({ kernel: null }), KernelLoadError);
  assert.throws(() => loadNativeKernel({ host: null }), /no executable memory/);
});

Deno.test("close() unmaps the kernel; it cannot hash afterwards", () => {
  const k = loadNativeKernel();
  assert.equal(k.hash(pattern(1)).length, 32);
  k.close();
  assert.throws(() => k.hash(pattern(1)), /the kernel was closed/);
  assert.throws(() => k.hashWith(pattern(1), 1), KernelLoadError);
  k.close(); // twice is harmless
});
