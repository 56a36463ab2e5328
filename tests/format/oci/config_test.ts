import assert from "node:assert/strict";
import {
  Arch,
  HEADER_FIELDS,
  Hypervisor,
  inspectSnapshot,
  MAX_HOST_FUNCTIONS,
  SnapshotFormatError,
} from "../../../format/mod.ts";
import {
  encodeSnapshotConfig,
  OciContentError,
  parseSnapshotConfig,
  readSnapshotConfig,
  type SnapshotConfig,
} from "../../../format/oci/mod.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url);

async function goldenConfig(): Promise<SnapshotConfig> {
  return await readSnapshotConfig(GOLDEN);
}

Deno.test("readSnapshotConfig holds the inspection's host-independent fields and the file size", async () => {
  const config = await goldenConfig();
  const bytes = await Deno.readFile(GOLDEN);
  const host = { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: Number(config.abiVersion) };
  const info = inspectSnapshot(bytes, bytes.byteLength, host);
  assert.equal(info.compatible, true);
  assert.deepEqual(config, {
    formatVersion: info.formatVersion,
    abiVersion: info.abiVersion,
    arch: info.arch,
    hypervisor: info.hypervisor,
    entrypoint: info.entrypoint,
    header: info.header,
    sregs: info.sregs,
    hostFunctions: info.hostFunctions,
    headerHash: info.headerHash,
    blobHash: info.blobHash,
    fileSize: bytes.byteLength,
  });
  assert.equal(config.arch, "x86_64");
  assert.equal(config.entrypoint, "Call");
  assert.deepEqual(config.hostFunctions, ["Add(i32, i32) -> i32", "HostPrint(string) -> i32"]);
});

Deno.test("readSnapshotConfig runs the format checks on the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await Deno.readFile(GOLDEN);
    bytes[1112] ^= 1; // header_hash
    await Deno.writeFile(`${dir}/bad.hls`, bytes);
    await assert.rejects(() => readSnapshotConfig(`${dir}/bad.hls`), (e) => {
      assert.ok(e instanceof SnapshotFormatError);
      assert.equal(e.kind, "HeaderHashMismatch");
      return true;
    });
    await Deno.writeFile(`${dir}/short.hls`, bytes.subarray(0, 100));
    await assert.rejects(() => readSnapshotConfig(`${dir}/short.hls`), { name: "SnapshotFormatError" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeSnapshotConfig is deterministic and parseSnapshotConfig reads it back", async () => {
  const config = await goldenConfig();
  const shuffled = { ...config, header: Object.fromEntries(Object.entries(config.header).reverse()) };
  const bytes = encodeSnapshotConfig(shuffled as SnapshotConfig);
  assert.deepEqual(bytes, encodeSnapshotConfig(config));
  assert.deepEqual(
    Object.keys(JSON.parse(new TextDecoder().decode(bytes)).header),
    HEADER_FIELDS.map(([n]) => n),
  );
  assert.deepEqual(parseSnapshotConfig(bytes), config);
});

Deno.test("parseSnapshotConfig refuses configs that break the schema, naming the field", async () => {
  const good = JSON.parse(new TextDecoder().decode(encodeSnapshotConfig(await goldenConfig())));
  const header = (patch: Record<string, unknown>) => ({ ...good, header: { ...good.header, ...patch } });
  const cases: [unknown, string, RegExp][] = [
    [[], "", /is an array, expected a JSON object/],
    [{ ...good, formatVersion: 0 }, "formatVersion", /expected a positive integer/],
    [{ ...good, abiVersion: -1 }, "abiVersion", /non-negative integer/],
    [{ ...good, abiVersion: "1e3" }, "abiVersion", /non-negative integer/],
    [{ ...good, header: null }, "header", /an object/],
    [header({ memory_size: 1.5 }), "header.memory_size", /non-negative integer/],
    [header({ arch: undefined }), "header.arch", /is undefined|non-negative/],
    [{ ...good, sregs: [] }, "sregs", /an object or null/],
    [{ ...good, hostFunctions: [1] }, "hostFunctions", /array of at most 4096 strings/],
    [{ ...good, hostFunctions: Array(MAX_HOST_FUNCTIONS + 1).fill("f() -> i32") }, "hostFunctions", /4096/],
    [{ ...good, blobHash: "AB".repeat(32) }, "blobHash", /64 lower-case hex digits/],
    [{ ...good, headerHash: undefined }, "headerHash", /64 lower-case hex digits/],
    [{ ...good, fileSize: 2 ** 40 }, "fileSize", /an integer in 0\.\./],
    [{ ...good, arch: "" }, "arch", /a name of 1\.\.64 characters/],
  ];
  for (const [json, field, message] of cases) {
    const bytes = new TextEncoder().encode(JSON.stringify(json));
    assert.throws(() => parseSnapshotConfig(bytes), (e) => {
      assert.ok(e instanceof OciContentError, String(e));
      assert.equal(e.field, field, e.message);
      assert.match(e.message, message);
      assert.ok(e.message.startsWith("Invalid config: "));
      return true;
    });
  }
  assert.throws(() => parseSnapshotConfig(new Uint8Array([0xff, 0xfe])), {
    name: "OciContentError",
    kind: "InvalidJson",
  });
  assert.throws(() => parseSnapshotConfig(new Uint8Array(4 * 1024 * 1024 + 1)), { kind: "TooLarge" });
});
