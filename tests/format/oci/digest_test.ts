import assert from "node:assert/strict";
import { digestFile, Sha256, sha256Digest } from "../../../format/oci/mod.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url);

async function webCrypto(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

Deno.test("sha256Digest matches the FIPS 180-2 test vectors", () => {
  const text = (s: string) => new TextEncoder().encode(s);
  assert.equal(
    sha256Digest(text("abc")),
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    sha256Digest(text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("Sha256 fed in uneven chunks equals the one-shot Web Crypto digest", async () => {
  const bytes = new Uint8Array(1_000_003);
  for (let i = 0; i < bytes.byteLength; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  const hash = new Sha256();
  for (let offset = 0, step = 1; offset < bytes.byteLength; offset += step, step = step * 3 + 1) {
    hash.update(bytes.subarray(offset, offset + step));
  }
  assert.equal(hash.digest(), await webCrypto(bytes));
});

Deno.test("Sha256 refuses use after digest()", () => {
  const hash = new Sha256();
  hash.digest();
  assert.throws(() => hash.update(new Uint8Array(1)), /after digest/);
  assert.throws(() => hash.digest(), /called twice/);
});

Deno.test("digestFile streams a file to its digest and length", async () => {
  const bytes = await Deno.readFile(GOLDEN);
  assert.deepEqual(await digestFile(GOLDEN), { digest: await webCrypto(bytes), size: bytes.byteLength });
});
