// Reading files that cannot be mapped into sealed memory (vm/memory/_read.ts): chunking, the size limit
// (before reading when the size is known, while reading when not), the early stop on bytes that cannot be
// a snapshot, zero chunks left unwritten, and files read through Deno's own API.
import assert from "node:assert/strict";
import { isZero, type OpenRules, READ_CHUNK, readStream, readThroughDeno } from "../../../vm/memory/_read.ts";

class TooLarge extends Error {}
class NotRegular extends Error {}

function rules(maxReadSize: number): OpenRules {
  return {
    notRegular: () => new NotRegular(),
    maxReadSize,
    tooLarge: (found) => new TooLarge(found),
    plausible: (head) => head[0] === 0x48, // "H"
  };
}

/** A source that hands out `bytes` at most `step` bytes per read. */
function source(bytes: Uint8Array, step = bytes.length) {
  let at = 0;
  return (into: Uint8Array) => {
    const n = Math.min(step, into.length, bytes.length - at);
    into.set(bytes.subarray(at, at + n));
    at += n;
    return n;
  };
}

/** A sink that records the chunks written and can rebuild the file. */
function recorder() {
  const writes: { offset: number; bytes: Uint8Array }[] = [];
  return {
    writes,
    write(offset: number, bytes: Uint8Array) {
      writes.push({ offset, bytes: bytes.slice() });
    },
    contents(size: number) {
      const out = new Uint8Array(size);
      for (const w of writes) out.set(w.bytes, w.offset);
      return out;
    },
  };
}

Deno.test("readStream reads to the end in chunks and leaves zero chunks unwritten", () => {
  const size = 3 * READ_CHUNK + 1234;
  const file = new Uint8Array(size);
  file[0] = 0x48;
  file.fill(7, 2 * READ_CHUNK + 10, 2 * READ_CHUNK + 20); // chunk 1 stays all zeros
  file[size - 1] = 9;
  for (const step of [size, 4096, 1000]) {
    const sink = recorder();
    assert.equal(readStream(source(file, step), sink, rules(size)), size);
    assert.deepEqual(sink.writes.map((w) => w.offset), [0, 2 * READ_CHUNK, 3 * READ_CHUNK], `step ${step}`);
    assert.deepEqual(sink.contents(size), file);
  }
  // Tiny reads: the plausibility check still sees the first 4 bytes together.
  const small = new Uint8Array([0x48, 1, 2, 3, 4, 5, 6]);
  const sink = recorder();
  assert.equal(readStream(source(small, 3), sink, rules(100)), small.length);
  assert.deepEqual(sink.contents(small.length), small);
});

Deno.test("readStream refuses more than the limit: by the known size before reading, else while reading", () => {
  let reads = 0;
  const counting = (into: Uint8Array) => (reads++, into.fill(0x48).length);
  assert.throws(() => readStream(counting, recorder(), rules(1000), isZero, 1001), TooLarge);
  assert.equal(reads, 0, "a known size over the limit reads nothing");
  // An endless source (a device) stops one chunk past the limit.
  assert.throws(() => readStream(counting, recorder(), rules(READ_CHUNK + 5)), (e: unknown) => {
    assert.ok(e instanceof TooLarge);
    assert.equal(e.message, `more than ${READ_CHUNK + 5} bytes`);
    return true;
  });
  assert.ok(reads <= 2, `${reads} reads`);
  // Exactly the limit is fine.
  const exact = new Uint8Array(1000).fill(0x48);
  assert.equal(readStream(source(exact), recorder(), rules(1000)), 1000);
});

Deno.test("readStream stops at the first bytes when they cannot start a snapshot (an endless device)", () => {
  let reads = 0;
  const endless = (into: Uint8Array) => (reads++, into.fill(0).length);
  assert.equal(readStream(endless, recorder(), rules(10 * READ_CHUNK)), READ_CHUNK);
  assert.equal(reads, 1);
  // Too few bytes to tell: read as they are.
  assert.equal(readStream(source(new Uint8Array([1, 2])), recorder(), rules(10)), 2);
});

Deno.test("isZero over aligned and unaligned views", () => {
  const bytes = new Uint8Array(4099);
  assert.ok(isZero(bytes));
  assert.ok(isZero(bytes.subarray(1)));
  for (const at of [0, 1, 3, 4095, 4098]) {
    bytes[at] = 1;
    assert.equal(isZero(bytes), false, `byte ${at}`);
    assert.equal(isZero(bytes.subarray(1)), at === 0, `byte ${at}, unaligned`);
    bytes[at] = 0;
  }
  assert.ok(isZero(new Uint8Array(0)));
});

Deno.test("readThroughDeno reads a file with Deno's API: its size, an identity, Deno's errors", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const bytes = new Uint8Array(2 * READ_CHUNK + 100);
    bytes[0] = 0x48;
    bytes[bytes.length - 1] = 1;
    Deno.writeFileSync(`${dir}/f`, bytes);
    const sink = recorder();
    const read = readThroughDeno(`${dir}/f`, sink, rules(bytes.length));
    assert.equal(read.size, bytes.length);
    assert.match(read.identity, /^deno:/);
    assert.deepEqual(sink.writes.map((w) => w.offset), [0, 2 * READ_CHUNK]);
    assert.deepEqual(sink.contents(read.size), bytes);
    assert.throws(() => readThroughDeno(`${dir}/f`, recorder(), rules(bytes.length - 1)), TooLarge);
    assert.throws(() => readThroughDeno(`${dir}/missing`, recorder(), rules(10)), Deno.errors.NotFound);
    assert.throws(() => readThroughDeno(dir, recorder(), rules(10)), Deno.errors.IsADirectory);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
