/**
 * Deltas (incremental snapshots) through registries and image layouts: a delta is pushed as its chain, the
 * complete base first; a base the registry holds is not sent again; a pull brings the whole chain into the
 * cache, side by side where the loader finds it; a chain that does not hold together, or a corrupt blob,
 * caches nothing. Uses the golden delta (tests/golden/testguest-call-delta.hls over testguest-call.hls).
 */
import assert from "node:assert/strict";
import { Snapshot, SnapshotFormatError } from "../../../mod.ts";
import {
  BLOB_HASH_ANNOTATION,
  buildSnapshotArtifact,
  digestFile,
  DigestMismatchError,
  exportOciLayout,
  importOciLayout,
  OCI_MANIFEST_MEDIA_TYPE,
  OciContentError,
  pullSnapshotFile,
  pushSnapshotFile,
  SNAPSHOT_DELTA_LAYER_MEDIA_TYPE,
  SNAPSHOT_LAYER_MEDIA_TYPE,
} from "../../../format/oci/mod.ts";
import { registryTest, startRegistry } from "./_registry.ts";
import { startCuttingProxy } from "./_proxy.ts";
import { listFiles, rawPushBlob, rawPushManifest } from "./_raw.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;
const DELTA = new URL("../../golden/testguest-call-delta.hls", import.meta.url).pathname;
/** A complete snapshot that is not the delta's base (another ABI version, same layout). */
const OTHER = new URL("../../golden/testguest-call-abi2.hls", import.meta.url).pathname;

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-oci-delta-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const hex = (digest: string) => digest.slice("sha256:".length);

Deno.test("a delta's artifact has the base's layer, then its own; the config is the delta's", async () => {
  const artifact = await buildSnapshotArtifact(DELTA);
  const base = await digestFile(GOLDEN);
  const delta = await digestFile(DELTA);
  assert.deepEqual(artifact.manifest.layers.map((l) => [l.mediaType, l.digest, l.size]), [
    [SNAPSHOT_LAYER_MEDIA_TYPE, base.digest, base.size],
    [SNAPSHOT_DELTA_LAYER_MEDIA_TYPE, delta.digest, delta.size],
  ]);
  const info = Snapshot.inspectFile(DELTA);
  assert.equal(artifact.config.blobHash, info.blobHash);
  assert.equal(artifact.config.fileSize, delta.size);
  assert.deepEqual(
    artifact.manifest.layers.map((l) => l.annotations?.[BLOB_HASH_ANNOTATION]),
    [info.base!.blobHash, info.blobHash],
  );
  assert.deepEqual(artifact.layers.map((l) => l.path), [
    DELTA.replace(/[^/]*$/, "testguest-call.hls"),
    DELTA,
  ]);
});

Deno.test("a delta without its base is BaseNotFound; resolveBase says where the base is", async () => {
  await withDir(async (dir) => {
    await Deno.copyFile(DELTA, `${dir}/delta.hls`);
    await assert.rejects(() => buildSnapshotArtifact(`${dir}/delta.hls`), (e) => {
      assert.ok(e instanceof SnapshotFormatError, String(e));
      assert.equal(e.kind, "BaseNotFound");
      return true;
    });
    await assert.rejects(
      () => buildSnapshotArtifact(`${dir}/delta.hls`, { resolveBase: () => OTHER }),
      (e) => e instanceof SnapshotFormatError && e.kind === "BaseMismatch" && e.field === "base.blob_hash",
    );
    const found = await buildSnapshotArtifact(`${dir}/delta.hls`, { resolveBase: () => GOLDEN });
    assert.equal(found.manifestDigest, (await buildSnapshotArtifact(DELTA)).manifestDigest);
  });
});

registryTest("a delta pushed over a base the registry holds sends only the delta's bytes", async () => {
  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  await pushSnapshotFile(GOLDEN, `${proxy.host}/app:base`);
  const before = proxy.bytes;
  const pushed = await pushSnapshotFile(DELTA, `${proxy.host}/app:delta`);
  const sent = proxy.bytes - before;
  const deltaSize = (await Deno.stat(DELTA)).size;
  assert.deepEqual(pushed.blobs.map((b) => [b.mediaType, b.outcome]), [
    [SNAPSHOT_LAYER_MEDIA_TYPE, "exists"],
    [SNAPSHOT_DELTA_LAYER_MEDIA_TYPE, "uploaded"],
    ["application/vnd.snapvm.snapshot.config.v1+json", "uploaded"],
  ]);
  // The delta's file, the config and the manifest, plus HTTP headers: nothing of the 2.4 MB base.
  const small = pushed.manifest.config.size + (await buildSnapshotArtifact(DELTA)).manifestBytes.byteLength;
  assert.equal(pushed.bytesSent, deltaSize + small);
  assert.ok(sent >= deltaSize + small && sent < deltaSize + small + 16 * 1024, `${sent} bytes sent`);

  // Into another repository of the registry: the base is mounted, not sent.
  const mounted = await pushSnapshotFile(DELTA, `${proxy.host}/other:delta`, { mountFrom: "app" });
  assert.deepEqual(mounted.blobs.map((b) => b.outcome), ["mounted", "mounted", "mounted"]);
  assert.equal(mounted.digest, pushed.digest);
});

registryTest("a pulled delta lands beside its base in the cache and loads from its path", async () => {
  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  const pushed = await pushSnapshotFile(DELTA, `${registry.host}/app:delta`);
  await withDir(async (cacheDir) => {
    const pulled = await pullSnapshotFile(`${proxy.host}/app:delta`, { cacheDir });
    assert.equal(pulled.digest, pushed.digest);
    assert.deepEqual(pulled.layers.map((l) => l.transferred), [true, true]);
    const chain = `${cacheDir}/chains/sha256/${hex(pushed.digest)}`;
    const [base, delta] = pushed.manifest.layers;
    assert.equal(pulled.path, `${chain}/${hex(delta.digest)}.hls`);
    assert.deepEqual(pulled.layers.map((l) => l.path), [
      `${cacheDir}/blobs/sha256/${hex(base.digest)}`,
      `${cacheDir}/blobs/sha256/${hex(delta.digest)}`,
    ]);
    // The chain directory links the blobs: the base under the name the delta records.
    assert.equal(
      (await Deno.stat(`${chain}/testguest-call.hls`)).ino,
      (await Deno.stat(pulled.layers[0].path)).ino,
    );
    assert.equal((await Deno.stat(pulled.path)).ino, (await Deno.stat(pulled.layers[1].path)).ino);
    assert.deepEqual(await Deno.readFile(pulled.path), await Deno.readFile(DELTA));
    {
      // A plain load finds the base next to the delta, and verifies the whole memory.
      using snap = Snapshot.fromFile(pulled.path);
      assert.equal(snap.entrypoint, "Call");
      assert.equal(Snapshot.inspectFile(pulled.path).chain[0].path, `${chain}/testguest-call.hls`);
    }

    // Again: by tag, only the manifest is read (one GET); by digest, nothing at all.
    const gets = proxy.requests.GET ?? 0;
    const again = await pullSnapshotFile(`${proxy.host}/app:delta`, { cacheDir });
    assert.equal((proxy.requests.GET ?? 0) - gets, 1);
    assert.deepEqual(again.layers.map((l) => l.transferred), [false, false]);
    assert.equal(again.path, pulled.path);
    const offline = await pullSnapshotFile(`${proxy.host}/app@${pushed.digest}`, { cacheDir });
    assert.equal(offline.bytesReceived, 0);
    assert.equal((proxy.requests.GET ?? 0) - gets, 1);
  });

  // A cache that holds the base (pulled on its own) downloads only the delta.
  await pushSnapshotFile(GOLDEN, `${registry.host}/app:base`);
  await withDir(async (cacheDir) => {
    await pullSnapshotFile(`${registry.host}/app:base`, { cacheDir });
    const pulled = await pullSnapshotFile(`${registry.host}/app:delta`, { cacheDir });
    assert.deepEqual(pulled.layers.map((l) => l.transferred), [false, true]);
    const deltaLayer = pulled.manifest.layers[1];
    assert.equal(
      pulled.bytesReceived,
      deltaLayer.size + pulled.manifest.config.size +
        (await buildSnapshotArtifact(DELTA)).manifestBytes.byteLength,
    );
  });
});

registryTest("a corrupt delta blob in the registry caches nothing, not even the intact base", async () => {
  await using registry = await startRegistry();
  const pushed = await pushSnapshotFile(DELTA, `${registry.host}/app:delta`);
  const layer = pushed.manifest.layers[1];
  const data = registry.blobDataPath(layer.digest);
  const bytes = await Deno.readFile(data);
  bytes[bytes.byteLength - 5000] ^= 0x01;
  await Deno.writeFile(data, bytes);
  await withDir(async (cacheDir) => {
    await assert.rejects(() => pullSnapshotFile(`${registry.host}/app:delta`, { cacheDir }), (e) => {
      assert.ok(e instanceof DigestMismatchError, String(e));
      assert.equal(e.expected, layer.digest);
      return true;
    });
    assert.deepEqual(await listFiles(cacheDir), []);
  });
});

registryTest("layers that do not form a chain are refused before anything is cached", async () => {
  await using registry = await startRegistry();
  const host = registry.host;
  const artifact = await buildSnapshotArtifact(DELTA);
  const blob = async (path: string, mediaType: string) => {
    const bytes = await Deno.readFile(path);
    return { mediaType, digest: await rawPushBlob(host, "evil", bytes), size: bytes.byteLength };
  };
  const config = {
    ...artifact.manifest.config,
    digest: await rawPushBlob(host, "evil", artifact.configBytes),
  };
  const manifest = (layers: unknown[]) => ({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config,
    layers,
  });
  const delta = await blob(DELTA, SNAPSHOT_DELTA_LAYER_MEDIA_TYPE);
  const cases: [string, unknown[], string, string][] = [
    // The delta's recorded base is not layer 0.
    ["wrong-base", [await blob(OTHER, SNAPSHOT_LAYER_MEDIA_TYPE), delta], "base.blob_hash", "InvalidField"],
    // Layer 0 is a delta.
    ["delta-first", [await blob(DELTA, SNAPSHOT_LAYER_MEDIA_TYPE), delta], "base", "InvalidField"],
    // Layer 1 is a complete snapshot labelled as a delta.
    [
      "not-a-delta",
      [await blob(GOLDEN, SNAPSHOT_LAYER_MEDIA_TYPE), await blob(GOLDEN, SNAPSHOT_DELTA_LAYER_MEDIA_TYPE)],
      "base",
      "InvalidField",
    ],
    // A lying blob-hash annotation.
    [
      "lying-annotation",
      [
        {
          ...(await blob(GOLDEN, SNAPSHOT_LAYER_MEDIA_TYPE)),
          annotations: { [BLOB_HASH_ANNOTATION]: "1".repeat(64) },
        },
        delta,
      ],
      `annotations["${BLOB_HASH_ANNOTATION}"]`,
      "InvalidField",
    ],
  ];
  for (const [tag, layers, field, kind] of cases) {
    await rawPushManifest(host, "evil", tag, manifest(layers));
    await withDir(async (cacheDir) => {
      await assert.rejects(() => pullSnapshotFile(`${host}/evil:${tag}`, { cacheDir }), (e) => {
        assert.ok(e instanceof OciContentError, `${tag}: ${e}`);
        assert.equal(e.kind, kind, e.message);
        assert.equal(e.field, field, e.message);
        return true;
      });
      assert.deepEqual(await listFiles(cacheDir), [], tag);
    });
  }
});

Deno.test("export and import of a delta: the same manifest as a push, the chain in the cache", async () => {
  await withDir(async (dir) => {
    const layout = `${dir}/layout`;
    const cacheDir = `${dir}/cache`;
    const exported = await exportOciLayout(DELTA, layout, "v1");
    const artifact = await buildSnapshotArtifact(DELTA);
    assert.equal(exported.digest, artifact.manifestDigest);
    assert.deepEqual(
      await listFiles(`${layout}/blobs`),
      [
        artifact.manifestDigest,
        artifact.manifest.config.digest,
        ...artifact.manifest.layers.map((l) => l.digest),
      ]
        .map((d) => `sha256/${hex(d)}`).sort(),
    );
    const imported = await importOciLayout(layout, "v1", { cacheDir });
    assert.equal(imported.digest, exported.digest);
    assert.equal(
      imported.path,
      `${cacheDir}/chains/sha256/${hex(exported.digest)}/${hex(artifact.manifest.layers[1].digest)}.hls`,
    );
    assert.deepEqual(await Deno.readFile(imported.path), await Deno.readFile(DELTA));
    using snap = Snapshot.fromFile(imported.path);
    assert.equal(snap.entrypoint, "Call");
    // Importing again copies nothing.
    const again = await importOciLayout(layout, exported.digest, { cacheDir });
    assert.deepEqual(again.layers.map((l) => l.transferred), [false, false]);
  });
});
