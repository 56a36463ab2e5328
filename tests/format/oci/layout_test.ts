import assert from "node:assert/strict";
import {
  buildSnapshotArtifact,
  DigestMismatchError,
  exportOciLayout,
  importOciLayout,
  OCI_INDEX_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
  OciLayoutError,
  OciReferenceError,
  pushSnapshotFile,
  REF_NAME_ANNOTATION,
  sha256Digest,
} from "../../../format/oci/mod.ts";
import { registryTest, startRegistry } from "./_registry.ts";
import { listFiles } from "./_raw.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;

async function withDirs(fn: (layout: string, cacheDir: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "snapvm-oci-layout-" });
  try {
    await fn(`${root}/layout`, `${root}/cache`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));

Deno.test("exportOciLayout writes oci-layout, index.json and content-addressed blobs", async () => {
  await withDirs(async (layout) => {
    const artifact = await buildSnapshotArtifact(GOLDEN);
    const exported = await exportOciLayout(GOLDEN, layout, "v1");
    assert.equal(exported.digest, artifact.manifestDigest);
    assert.deepEqual(exported.manifest, artifact.manifest);
    assert.deepEqual(await readJson(`${layout}/oci-layout`), { imageLayoutVersion: "1.0.0" });
    const manifestDescriptor = {
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      digest: artifact.manifestDigest,
      size: artifact.manifestBytes.byteLength,
    };
    assert.deepEqual(await readJson(`${layout}/index.json`), {
      schemaVersion: 2,
      mediaType: OCI_INDEX_MEDIA_TYPE,
      manifests: [{ ...manifestDescriptor, annotations: { [REF_NAME_ANNOTATION]: "v1" } }],
    });
    const blobs = [
      artifact.manifestDigest,
      artifact.manifest.config.digest,
      artifact.manifest.layers[0].digest,
    ];
    assert.deepEqual(
      await listFiles(layout),
      ["index.json", "oci-layout", ...blobs.map((d) => `blobs/sha256/${d.slice(7)}`)].sort(),
    );
    for (const digest of blobs) {
      assert.equal(sha256Digest(await Deno.readFile(`${layout}/blobs/sha256/${digest.slice(7)}`)), digest);
    }
    assert.deepEqual(
      await Deno.readFile(`${layout}/blobs/sha256/${artifact.manifest.layers[0].digest.slice(7)}`),
      await Deno.readFile(GOLDEN),
    );

    // More tags: v2 is added, v1 re-exported replaces its own entry.
    await exportOciLayout(GOLDEN, layout, "v2");
    await exportOciLayout(GOLDEN, layout, "v1");
    const index = await readJson(`${layout}/index.json`);
    assert.deepEqual(
      index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations[REF_NAME_ANNOTATION]),
      ["v2", "v1"],
    );
    await assert.rejects(() => exportOciLayout(GOLDEN, layout, "-bad"), OciReferenceError);
  });
});

Deno.test("importOciLayout copies a tagged or digest-named snapshot into the cache, verified", async () => {
  await withDirs(async (layout, cacheDir) => {
    const { digest } = await exportOciLayout(GOLDEN, layout, "v1");
    const byTag = await importOciLayout(layout, "v1", { cacheDir });
    assert.equal(byTag.digest, digest);
    assert.equal(byTag.reference, `${layout}@${digest}`);
    assert.ok(byTag.path.startsWith(`${cacheDir}/blobs/sha256/`));
    assert.deepEqual(await Deno.readFile(byTag.path), await Deno.readFile(GOLDEN));
    assert.equal(byTag.layers[0].transferred, true);
    const byDigest = await importOciLayout(layout, digest, { cacheDir });
    assert.equal(byDigest.path, byTag.path);
    assert.equal(byDigest.layers[0].transferred, false, "already cached");
    // The layout can go: the cache holds everything.
    await Deno.remove(layout, { recursive: true });
    assert.deepEqual(await Deno.readFile(byTag.path), await Deno.readFile(GOLDEN));
  });
});

Deno.test("importOciLayout refuses what is missing or corrupt, and caches nothing then", async () => {
  await withDirs(async (layout, cacheDir) => {
    await assert.rejects(() => importOciLayout(layout, "v1", { cacheDir }), (e) => {
      assert.ok(e instanceof OciLayoutError);
      assert.equal(
        e.message,
        `Cannot use OCI image layout ${layout}: it has no oci-layout file: not an OCI image layout`,
      );
      return true;
    });
    const exported = await exportOciLayout(GOLDEN, layout, "v1");
    await exportOciLayout(GOLDEN, layout, "v2");
    await assert.rejects(() => importOciLayout(layout, "v3", { cacheDir }), {
      name: "OciLayoutError",
      message: `Cannot use OCI image layout ${layout}: it has no manifest tagged "v3" (tags: v1, v2)`,
    });
    const layer = `${layout}/blobs/sha256/${exported.manifest.layers[0].digest.slice(7)}`;
    const bytes = await Deno.readFile(layer);
    await Deno.chmod(layer, 0o644);
    bytes[5000] ^= 1;
    await Deno.writeFile(layer, bytes);
    await assert.rejects(() => importOciLayout(layout, "v1", { cacheDir }), (e) => {
      assert.ok(e instanceof DigestMismatchError, String(e));
      assert.equal(e.expected, exported.manifest.layers[0].digest);
      return true;
    });
    assert.deepEqual(await listFiles(cacheDir), [], "nothing is cached");
    await Deno.remove(layer);
    await assert.rejects(
      () => importOciLayout(layout, "v1", { cacheDir }),
      /blob sha256:[0-9a-f]{64} is missing/,
    );
    await Deno.writeTextFile(`${layout}/oci-layout`, '{"imageLayoutVersion":"2.0.0"}');
    await assert.rejects(
      () => importOciLayout(layout, "v1", { cacheDir }),
      /imageLayoutVersion is "2\.0\.0", expected "1\.0\.0"/,
    );
  });
});

registryTest(
  "a layout export and a registry push of the same file have the same manifest digest",
  async () => {
    await using registry = await startRegistry();
    await withDirs(async (layout) => {
      const pushed = await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
      const exported = await exportOciLayout(GOLDEN, layout, "v1");
      assert.equal(exported.digest, pushed.digest);
      const response = await fetch(`http://${registry.host}/v2/app/manifests/${pushed.digest}`, {
        headers: { Accept: OCI_MANIFEST_MEDIA_TYPE },
      });
      assert.deepEqual(
        new Uint8Array(await response.arrayBuffer()),
        await Deno.readFile(`${layout}/blobs/sha256/${pushed.digest.slice(7)}`),
      );
    });
  },
);
