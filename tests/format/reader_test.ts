import assert from "node:assert/strict";
import { ByteReader } from "../../format/_reader.ts";
import { ByteWriter } from "../../format/_writer.ts";
import { SnapshotFormatError } from "../../format/errors.ts";

Deno.test("ByteReader reads little-endian integers and tracks position", () => {
  const bytes = new Uint8Array([
    0xab, // u8
    0x34,
    0x12, // u16 0x1234
    0x78,
    0x56,
    0x34,
    0x12, // u32 0x12345678
    0xef,
    0xcd,
    0xab,
    0x89,
    0x67,
    0x45,
    0x23,
    0x01, // u64 0x0123456789abcdef
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff, // u64 max
  ]);
  const reader = new ByteReader(bytes);
  assert.equal(reader.length, 23);
  assert.equal(reader.u8("a"), 0xab);
  assert.equal(reader.position, 1);
  assert.equal(reader.u16("b"), 0x1234);
  assert.equal(reader.u32("c"), 0x12345678);
  assert.equal(reader.u64("d"), 0x0123456789abcdefn);
  assert.equal(reader.remaining, 8);
  assert.equal(reader.u64("e"), 0xffff_ffff_ffff_ffffn);
  assert.equal(reader.remaining, 0);
  assert.equal(reader.position, 23);
});

Deno.test("ByteReader.bytes returns a subarray, not a copy", () => {
  const bytes = new Uint8Array([1, 2, 3, 4, 5]);
  const reader = new ByteReader(bytes);
  reader.skip(1, "skip");
  const view = reader.bytes(3, "view");
  assert.deepEqual([...view], [2, 3, 4]);
  assert.equal(view.buffer, bytes.buffer);
  bytes[2] = 99;
  assert.equal(view[1], 99);
  assert.equal(reader.bytes(0, "empty").length, 0);
  assert.equal(reader.remaining, 1);
});

Deno.test("every ByteReader read checks the length and throws Truncated without moving", () => {
  const reads: [string, (reader: ByteReader) => unknown, number][] = [
    ["u8", (r) => r.u8("f"), 1],
    ["u16", (r) => r.u16("f"), 2],
    ["u32", (r) => r.u32("f"), 4],
    ["u64", (r) => r.u64("f"), 8],
    ["bytes", (r) => r.bytes(5, "f"), 5],
    ["skip", (r) => r.skip(5, "f"), 5],
  ];
  for (const [name, read, size] of reads) {
    const reader = new ByteReader(new Uint8Array(size - 1));
    assert.throws(() => read(reader), (error: unknown) => {
      assert.ok(error instanceof SnapshotFormatError, name);
      assert.equal(error.kind, "Truncated");
      assert.equal(error.field, "f");
      assert.equal(error.expected, `${size} bytes`);
      return true;
    });
    assert.equal(reader.position, 0, `${name} must not advance on failure`);
  }
});

Deno.test("ByteReader never reads outside its subarray, even when the buffer continues", () => {
  const backing = new Uint8Array(64).fill(0xee);
  const window = backing.subarray(8, 12); // 4 bytes, with 52 more bytes of buffer after them
  const reader = new ByteReader(window);
  assert.throws(() => reader.u64("wide"), { kind: "Truncated" });
  assert.equal(reader.u32("narrow"), 0xeeeeeeee);
  assert.throws(() => reader.u8("past"), { kind: "Truncated" });
});

Deno.test("ByteReader truncation messages give file offsets and the action", () => {
  const reader = new ByteReader(new Uint8Array(3), { fileOffset: 1176, action: "save" });
  reader.u8("first");
  assert.throws(() => reader.u32("host_functions.count"), {
    name: "SnapshotFormatError",
    message: "Cannot save snapshot: host-functions section field host_functions.count is 2 bytes at file " +
      "offset 1177, expected 4 bytes",
  });
});

Deno.test("ByteReader rejects invalid byte counts as programming errors", () => {
  const reader = new ByteReader(new Uint8Array(4));
  assert.throws(() => reader.bytes(-1, "f"), RangeError);
  assert.throws(() => reader.bytes(1.5, "f"), RangeError);
  assert.throws(() => reader.bytes(Number.NaN, "f"), RangeError);
});

Deno.test("ByteWriter writes what ByteReader reads", () => {
  const bytes = new Uint8Array(1 + 2 + 4 + 8 + 8 + 3 + 2);
  const writer = new ByteWriter(bytes);
  writer.u8(0xfe);
  writer.u16(0xbeef);
  writer.u32(0xdeadbeef);
  writer.u64(0xffff_ffff_ffff_ffffn);
  writer.u64(Number.MAX_SAFE_INTEGER);
  writer.bytes(new Uint8Array([7, 8, 9]));
  writer.skip(2);
  assert.equal(writer.remaining, 0);
  assert.equal(writer.bytesWritten, bytes.length);
  const reader = new ByteReader(bytes);
  assert.equal(reader.u8("a"), 0xfe);
  assert.equal(reader.u16("b"), 0xbeef);
  assert.equal(reader.u32("c"), 0xdeadbeef);
  assert.equal(reader.u64("d"), 0xffff_ffff_ffff_ffffn);
  assert.equal(reader.u64("e"), BigInt(Number.MAX_SAFE_INTEGER));
  assert.deepEqual([...reader.bytes(5, "f")], [7, 8, 9, 0, 0]);
});

Deno.test("ByteWriter refuses overflow and values that do not fit", () => {
  const writer = new ByteWriter(new Uint8Array(4));
  assert.throws(() => writer.u64(1n), RangeError);
  assert.throws(() => writer.u8(256), RangeError);
  assert.throws(() => writer.u8(-1), RangeError);
  assert.throws(() => writer.u16(0x10000), RangeError);
  assert.throws(() => writer.u32(1.5), RangeError);
  assert.throws(() => new ByteWriter(new Uint8Array(8)).u64(2 ** 53), RangeError);
  assert.throws(() => new ByteWriter(new Uint8Array(8)).u64(-1n), RangeError);
  assert.throws(() => new ByteWriter(new Uint8Array(8)).u64(1n << 64n), RangeError);
  assert.equal(writer.position, 0);
});
