import assert from "node:assert/strict";
import { SnapshotFormatError } from "../../../format/mod.ts";
import {
  BLOB_HASH_ANNOTATION,
  buildSnapshotArtifact,
  digestFile,
  encodeManifest,
  encodeSnapshotConfig,
  MAX_LAYERS,
  MAX_SNAPSHOT_LAYER_SIZE,
  OCI_MANIFEST_MEDIA_TYPE,
  OciContentError,
  type OciManifest,
  parseSnapshotManifest,
  sha256Digest,
  SNAPSHOT_CONFIG_MEDIA_TYPE,
  SNAPSHOT_DELTA_LAYER_MEDIA_TYPE,
  SNAPSHOT_LAYER_MEDIA_TYPE,
} from "../../../format/oci/mod.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;
const D = (c: string) => `sha256:${c.repeat(64)}`;

function manifest(patch: Partial<Record<keyof OciManifest, unknown>> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config: { mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE, digest: D("1"), size: 100 },
    layers: [{ mediaType: SNAPSHOT_LAYER_MEDIA_TYPE, digest: D("2"), size: 8192 }],
    ...patch,
  };
}
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

Deno.test("buildSnapshotArtifact describes the file as one layer with a snapvm config", async () => {
  const artifact = await buildSnapshotArtifact(GOLDEN);
  const file = await digestFile(GOLDEN);
  assert.deepEqual(artifact.manifest, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config: {
      mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE,
      digest: sha256Digest(artifact.configBytes),
      size: artifact.configBytes.byteLength,
    },
    layers: [{
      mediaType: SNAPSHOT_LAYER_MEDIA_TYPE,
      digest: file.digest,
      size: file.size,
      annotations: { [BLOB_HASH_ANNOTATION]: artifact.config.blobHash },
    }],
  });
  assert.deepEqual(artifact.configBytes, encodeSnapshotConfig(artifact.config));
  assert.deepEqual(artifact.manifestBytes, encodeManifest(artifact.manifest));
  assert.equal(artifact.manifestDigest, sha256Digest(artifact.manifestBytes));
  assert.deepEqual(artifact.layers.map((l) => l.path), [GOLDEN]);
  assert.deepEqual(parseSnapshotManifest(artifact.manifestBytes), artifact.manifest);
  // Same file, same digest: pushes are idempotent and digests are stable across machines.
  assert.equal((await buildSnapshotArtifact(GOLDEN)).manifestDigest, artifact.manifestDigest);
});

Deno.test("buildSnapshotArtifact refuses a file that is not a snapshot", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/x.hls`, "not a snapshot".repeat(200));
    await assert.rejects(() => buildSnapshotArtifact(`${dir}/x.hls`), (e) => {
      assert.ok(e instanceof SnapshotFormatError);
      assert.equal(e.kind, "BadMagic");
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseSnapshotManifest keeps only known fields", () => {
  const parsed = parseSnapshotManifest(bytes({ ...manifest(), annotations: { a: "b" }, extra: 1 }));
  assert.deepEqual(parsed, { ...manifest(), annotations: { a: "b" } });
  const noType = manifest();
  delete noType.mediaType;
  assert.equal(parseSnapshotManifest(bytes(noType)).mediaType, OCI_MANIFEST_MEDIA_TYPE);
});

Deno.test("parseSnapshotManifest refuses what is not a snapvm snapshot manifest", () => {
  const layer = (patch: Record<string, unknown>) => ({
    layers: [{ mediaType: SNAPSHOT_LAYER_MEDIA_TYPE, digest: D("2"), size: 8192, ...patch }],
  });
  const cases: [unknown, string, string, RegExp][] = [
    ["[1]", "InvalidJson", "", /expected a JSON object/],
    [
      { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] },
      "UnsupportedMediaType",
      "mediaType",
      /an image index is not a snapvm snapshot/,
    ],
    [manifest({ schemaVersion: 1 }), "InvalidField", "schemaVersion", /is 1, expected 2/],
    [
      manifest({
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: D("1"), size: 1 },
      }),
      "UnsupportedMediaType",
      "config.mediaType",
      /not a snapvm snapshot/,
    ],
    [
      manifest({ config: { mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE, digest: "md5:00", size: 1 } }),
      "InvalidField",
      "config.digest",
      /sha256:/,
    ],
    [
      manifest({ config: { mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE, digest: D("1"), size: -1 } }),
      "InvalidField",
      "config.size",
      /non-negative/,
    ],
    [
      manifest({ config: { mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE, digest: D("1"), size: 5 << 20 } }),
      "TooLarge",
      "config.size",
      /at most/,
    ],
    [manifest({ layers: [] }), "InvalidField", "layers", new RegExp(`1 to ${MAX_LAYERS} layers`)],
    [
      manifest({ layers: Array(MAX_LAYERS + 1).fill(manifest().layers) }),
      "InvalidField",
      "layers",
      new RegExp(`${MAX_LAYERS + 1} layers`),
    ],
    [
      manifest(layer({ mediaType: "application/vnd.oci.image.layer.v1.tar" })),
      "UnsupportedMediaType",
      "layers[0].mediaType",
      /base snapshot/,
    ],
    [manifest(layer({ size: MAX_SNAPSHOT_LAYER_SIZE + 1 })), "TooLarge", "layers[0].size", /at most/],
    [manifest(layer({ size: 2 ** 53 })), "InvalidField", "layers[0].size", /non-negative integer/],
    [
      manifest(layer({ annotations: { [BLOB_HASH_ANNOTATION]: "xyz" } })),
      "InvalidField",
      `layers[0].annotations["${BLOB_HASH_ANNOTATION}"]`,
      /64 lower-case hex/,
    ],
    [manifest(layer({ annotations: { a: 1 } })), "InvalidField", 'layers[0].annotations["a"]', /a string/],
    [
      manifest({ layers: [manifest().layers, manifest().layers].flat() }),
      "UnsupportedMediaType",
      "layers[1].mediaType",
      /expected application\/vnd\.snapvm\.snapshot\.delta\.v1 \(a delta over layer 0\)/,
    ],
    [
      manifest({
        layers: [{ mediaType: SNAPSHOT_DELTA_LAYER_MEDIA_TYPE, digest: D("3"), size: 10 }, manifest().layers]
          .flat(),
      }),
      "UnsupportedMediaType",
      "layers[0].mediaType",
      /base snapshot/,
    ],
  ];
  for (const [value, kind, field, message] of cases) {
    const input = typeof value === "string" ? new TextEncoder().encode(value) : bytes(value);
    assert.throws(() => parseSnapshotManifest(input), (e) => {
      assert.ok(e instanceof OciContentError, String(e));
      assert.equal(e.kind, kind, e.message);
      assert.equal(e.field, field, e.message);
      assert.match(e.message, message);
      return true;
    });
  }
  assert.throws(() => parseSnapshotManifest(new Uint8Array(4 * 1024 * 1024 + 1)), { kind: "TooLarge" });
});
