/**
 * The message codec (vm/machine/codec.ts) on plain buffers: strings take a JavaScript path when short and
 * ASCII and a native one otherwise, and both must agree, validate and respect their limits alike.
 */
import assert from "node:assert/strict";
import { BufferFullError, ProtocolError, Reader, Writer } from "../../../vm/machine/codec.ts";

function writer(limit: number, size = 256): Writer {
  const bytes = new Uint8Array(size);
  return new Writer(bytes, new DataView(bytes.buffer), limit);
}

function reader(bytes: Uint8Array, limit = bytes.length): Reader {
  return new Reader(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.length), limit);
}

/** A length-prefixed string of these bytes. */
function encoded(payload: number[]): Uint8Array {
  const b = new Uint8Array(4 + payload.length);
  new DataView(b.buffer).setUint32(0, payload.length, true);
  b.set(payload, 4);
  return b;
}

const STRINGS = [
  "",
  "hello",
  "x".repeat(31),
  "x".repeat(32),
  "x".repeat(33),
  "x".repeat(200),
  "héllo", // non-ASCII in a short string: the native path, from the start
  "abcdefgh€", // non-ASCII after ASCII: the JavaScript path gives up half-way
  "\uFFFD", // a real U+FFFD is valid text and must survive
  "a\uFFFDb".repeat(20),
  "😀 emoji",
  "\u007f\u0000",
];

Deno.test("strings round-trip through Writer and Reader, ASCII or not, short or long", () => {
  for (const s of STRINGS) {
    const w = writer(256);
    w.string(s);
    const expected = new TextEncoder().encode(s);
    assert.equal(w.pos, 4 + expected.length, JSON.stringify(s));
    assert.equal(w.high, w.pos);
    assert.deepEqual(w.bytes.subarray(4, w.pos), expected);
    assert.equal(w.view.getUint32(0, true), expected.length);
    assert.equal(reader(w.bytes.subarray(0, w.pos)).string(), s);
  }
});

Deno.test("a string that does not fit throws BufferFullError, and `high` covers what was written", () => {
  for (const s of ["hello", "héllo", "x".repeat(40)]) {
    const w = writer(6);
    assert.throws(() => w.string(s), BufferFullError);
    assert.ok(w.high <= 6);
    assert.ok(w.bytes.subarray(6).every((b) => b === 0), "nothing written past the limit");
  }
  // The JavaScript path gives up at the first non-ASCII character; the bytes it wrote count.
  const w = writer(256);
  w.string("abc€");
  assert.equal(w.high, 4 + 6);
});

Deno.test("invalid UTF-8 from the guest is a ProtocolError, short or long", () => {
  const bad = [
    [0xff],
    [0x68, 0x80],
    [0xc3],
    [0xed, 0xa0, 0x80], // a surrogate
    [...new Array(40).fill(0x61), 0xfe],
  ];
  for (const payload of bad) {
    assert.throws(() => reader(encoded(payload)).string("result"), (e: unknown) => {
      assert.ok(e instanceof ProtocolError);
      assert.equal(e.message, "result is not valid UTF-8");
      return true;
    });
  }
});

Deno.test("a leading byte-order mark is dropped, as the validating decoder does", () => {
  assert.equal(reader(encoded([0xef, 0xbb, 0xbf, 0x61])).string(), "a");
  assert.equal(reader(encoded([0xef, 0xbb, 0xbf, ...new Array(40).fill(0x61)])).string(), "a".repeat(40));
});

Deno.test("lengths past the buffer are ProtocolErrors that name the field", () => {
  const b = encoded([0x61, 0x62]);
  new DataView(b.buffer).setUint32(0, 3, true);
  assert.throws(
    () => reader(b).string("result of Echo"),
    { name: "ProtocolError", message: "result of Echo of 3 bytes at offset 4 runs past the 6-byte buffer" },
  );
  assert.throws(
    () => reader(new Uint8Array(2)).string("result of Echo"),
    { message: "result of Echo length of 4 bytes at offset 0 runs past the 2-byte buffer" },
  );
  assert.throws(
    () => reader(new Uint8Array(0)).value("result of Echo"),
    { message: "result of Echo tag of 1 bytes at offset 0 runs past the 0-byte buffer" },
  );
});
