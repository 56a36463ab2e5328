import assert from "node:assert/strict";
import { addressOf, alignedBytes, padTo } from "../../../vm/whp/aligned.ts";
import { bitmapBytes, dirtyPages, maskToPages } from "../../../vm/whp/dirty.ts";

Deno.test("register value buffers start at 16-byte aligned addresses", () => {
  for (let i = 0; i < 64; i++) {
    const size = (i % 18 + 1) * 16;
    const b = alignedBytes(size, 16);
    assert.equal(b.length, size);
    assert.equal(addressOf(b) % 16n, 0n);
  }
  assert.equal(addressOf(alignedBytes(8, 4096)) % 4096n, 0n);
  assert.equal(padTo(0x1000n, 16), 0);
  assert.equal(padTo(0x1001n, 16), 15);
  assert.throws(() => alignedBytes(16, 12), RangeError);
});

Deno.test("dirty bitmap: size, masking of pages past the tracked ones, page numbers", () => {
  assert.equal(bitmapBytes(0), 0);
  assert.equal(bitmapBytes(1), 8);
  assert.equal(bitmapBytes(64), 8);
  assert.equal(bitmapBytes(65), 16);
  const b = new BigUint64Array([(1n << 63n) | 0b1001n, 0xffn]);
  maskToPages(b, 68);
  assert.deepEqual([...b], [(1n << 63n) | 0b1001n, 0xfn]);
  assert.deepEqual(dirtyPages(b), [0, 3, 63, 64, 65, 66, 67]);
  assert.deepEqual([...maskToPages(new BigUint64Array([5n, 5n]), 64)], [5n, 0n]);
});
