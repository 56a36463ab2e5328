import assert from "node:assert/strict";
import {
  bytesToLatin1,
  checksum,
  escapeBinary,
  framePacket,
  fromHex,
  latin1ToBytes,
  MAX_PACKET,
  PacketReader,
  parseHex64,
  type RspEvent,
  toHex,
  unescapeBinary,
} from "../../../vm/debug/packet.ts";

function events(input: Uint8Array | string, chunk = Infinity): RspEvent[] {
  const r = new PacketReader();
  const bytes = typeof input === "string" ? latin1ToBytes(input) : input;
  const out: RspEvent[] = [];
  for (let i = 0; i < bytes.length; i += Math.min(chunk, bytes.length)) {
    r.push(bytes.subarray(i, i + Math.min(chunk, bytes.length)));
    for (let e = r.next(); e !== undefined; e = r.next()) out.push(e);
  }
  return out;
}

Deno.test("checksums and framing match gdb's examples", () => {
  assert.equal(checksum(latin1ToBytes("OK")), 0x9a);
  assert.equal(checksum(latin1ToBytes("g")), 0x67);
  assert.equal(checksum(latin1ToBytes("")), 0);
  assert.equal(checksum(new Uint8Array([0xff, 0x02])), 0x01); // modulo 256
  assert.equal(bytesToLatin1(framePacket("qSupported")), "$qSupported#37");
  assert.equal(bytesToLatin1(framePacket("")), "$#00");
});

Deno.test("binary escaping covers # $ } * and round-trips every byte", () => {
  assert.deepEqual([...escapeBinary(latin1ToBytes("#$}*a"))], [
    0x7d,
    0x03,
    0x7d,
    0x04,
    0x7d,
    0x5d,
    0x7d,
    0x0a,
    0x61,
  ]);
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const escaped = escapeBinary(all);
  for (const b of escaped.filter((_, i) => escaped[i - 1] !== 0x7d)) {
    assert.ok(b !== 0x23 && b !== 0x24 && b !== 0x2a, `unescaped special byte ${b}`);
  }
  assert.deepEqual(unescapeBinary(escaped), all);
  assert.equal(unescapeBinary(new Uint8Array([0x41, 0x7d])), undefined);
});

Deno.test("hex helpers reject what is not hex", () => {
  assert.equal(toHex(new Uint8Array([0, 0x0f, 0xff])), "000fff");
  assert.deepEqual(fromHex("000fFF"), new Uint8Array([0, 0x0f, 0xff]));
  assert.equal(fromHex("abc"), undefined);
  assert.equal(fromHex("zz"), undefined);
  assert.equal(parseHex64("0"), 0n);
  assert.equal(parseHex64("ffffffffffffffff"), 0xffff_ffff_ffff_ffffn);
  assert.equal(parseHex64("10000000000000000"), undefined);
  assert.equal(parseHex64(""), undefined);
  assert.equal(parseHex64("-1"), undefined);
  assert.equal(bytesToLatin1(new Uint8Array([0x80, 0x9f, 0xff])), "\x80\x9f\xff");
});

Deno.test("the reader splits acks, packets and interrupts, in any chunking", () => {
  const stream = "+$g#67-\x03$m0,1#fa+";
  for (const chunk of [1, 2, 3, 100]) {
    const e = events(stream, chunk);
    assert.deepEqual(
      e.map((x) => x.kind),
      ["ack", "packet", "nack", "interrupt", "packet", "ack"],
      `chunk ${chunk}`,
    );
    const p = e[1] as { body: Uint8Array; checksumOk: boolean };
    assert.equal(bytesToLatin1(p.body), "g");
    assert.ok(p.checksumOk);
  }
});

Deno.test("0x03 inside a packet is data (an escaped #), not an interrupt", () => {
  const body = new Uint8Array([0x58, 0x31, 0x2c, 0x31, 0x3a, ...escapeBinary(new Uint8Array([0x23]))]); // X1,1:}\x03
  const e = events(framePacket(body));
  assert.equal(e.length, 1);
  assert.equal(e[0].kind, "packet");
  assert.deepEqual((e[0] as { body: Uint8Array }).body, body);
});

Deno.test("bad checksums are flagged, noise is ignored, $ restarts a packet", () => {
  const e = events("garbage$g#00xyz$abc$?#3f");
  assert.deepEqual(e.map((x) => x.kind), ["packet", "packet"]);
  assert.equal((e[0] as { checksumOk: boolean }).checksumOk, false);
  assert.equal(bytesToLatin1((e[1] as { body: Uint8Array }).body), "?");
  assert.ok((e[1] as { checksumOk: boolean }).checksumOk);
  // Non-hex checksum digits never match.
  assert.equal((events("$#zz")[0] as { checksumOk: boolean }).checksumOk, false);
});

Deno.test("an overlong packet is dropped with bounded memory, and the stream recovers", () => {
  const big = "$" + "a".repeat(MAX_PACKET + 10) + "#00";
  const e = events(big + "$?#3f", 4096);
  assert.deepEqual(e.map((x) => x.kind), ["overlong", "packet"]);
  const exact = "a".repeat(MAX_PACKET);
  const ok = events(framePacket(exact));
  assert.equal(ok[0].kind, "packet");
  assert.equal((ok[0] as { body: Uint8Array }).body.length, MAX_PACKET);
});
