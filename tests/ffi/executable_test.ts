import assert from "node:assert/strict";
import { ExecutableMemoryError, openHost, PAGE_SIZE, PROT_EXEC, WINDOWS } from "../../ffi/executable.ts";

Deno.test("constants, pinned against <sys/mman.h>, winnt.h and winbase.h", () => {
  assert.equal(PROT_EXEC, 0x4);
  assert.equal(PAGE_SIZE, 4096);
  assert.deepEqual(WINDOWS, {
    MEM_COMMIT: 0x00001000,
    MEM_RESERVE: 0x00002000,
    MEM_RELEASE: 0x00008000,
    PAGE_READWRITE: 0x04,
    PAGE_EXECUTE_READ: 0x20,
    INFINITE: 0xffffffff,
    WAIT_FAILED: 0xffffffff,
  });
});

Deno.test("mapped code runs, data stays writable, and the mapping is released", () => {
  const host = openHost()!;
  assert.equal(host.os, "linux");
  assert.ok(host.canStartThreads);
  // mov eax, 42; ret
  const code = new Uint8Array([0xb8, 42, 0, 0, 0, 0xc3]);
  const image = new Uint8Array(PAGE_SIZE + 8);
  image.set(code);
  image.set([1, 2, 3, 4, 5, 6, 7, 8], PAGE_SIZE);
  const memory = host.mapExecutable(image, PAGE_SIZE, 2 * PAGE_SIZE);
  try {
    assert.equal(memory.size, 2 * PAGE_SIZE);
    const fn = new Deno.UnsafeFnPointer(memory.base as Deno.PointerObject<never>, {
      parameters: [],
      result: "i32",
    });
    assert.equal(fn.call(), 42);
    const data = new Deno.UnsafePointerView(
      Deno.UnsafePointer.create(Deno.UnsafePointer.value(memory.base) + BigInt(PAGE_SIZE))!,
    );
    assert.equal(data.getBigUint64(0), 0x0807060504030201n);
  } finally {
    memory.release();
    memory.release(); // twice is harmless
  }
});

Deno.test("a layout that is not page-aligned is refused before anything is mapped", () => {
  const host = openHost()!;
  assert.throws(() => host.mapExecutable(new Uint8Array(10), 100, PAGE_SIZE), RangeError);
  assert.throws(() => host.mapExecutable(new Uint8Array(2 * PAGE_SIZE), PAGE_SIZE, PAGE_SIZE), RangeError);
  assert.throws(() => host.mapExecutable(new Uint8Array(1), 2 * PAGE_SIZE, PAGE_SIZE), RangeError);
});

Deno.test("a started thread runs its entry point and is joined", () => {
  const host = openHost()!;
  // mov dword [rdi], 7; xor eax, eax; ret -- stores into its argument (SysV: first argument in rdi)
  const image = new Uint8Array([0xc7, 0x07, 7, 0, 0, 0, 0x31, 0xc0, 0xc3]);
  const memory = host.mapExecutable(image, PAGE_SIZE, PAGE_SIZE);
  try {
    const cell = new Int32Array(1);
    const thread = host.startThread(memory.base, Deno.UnsafePointer.of(cell)!);
    assert.ok(thread !== null);
    thread.join();
    assert.equal(cell[0], 7);
  } finally {
    memory.release();
  }
});

Deno.test("errors name the failing call", () => {
  const error = new ExecutableMemoryError("mmap", "ENOMEM");
  assert.equal(error.name, "ExecutableMemoryError");
  assert.equal(error.message, "Cannot map machine code: mmap failed with ENOMEM");
});
