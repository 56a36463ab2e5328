import assert from "node:assert/strict";
import { HostFunctions, MultiUseSandbox, Snapshot, SnapshotFormatError } from "../../../mod.ts";
import {
  buildSnapshotArtifact,
  DigestMismatchError,
  encodeSnapshotConfig,
  inspectRemoteSnapshot,
  OCI_MANIFEST_MEDIA_TYPE,
  OciContentError,
  pullSnapshotFile,
  pushSnapshotFile,
  RegistryConnectionError,
  RegistryError,
  SNAPSHOT_CONFIG_MEDIA_TYPE,
  SNAPSHOT_LAYER_MEDIA_TYPE,
} from "../../../format/oci/mod.ts";
import { registryTest, startRegistry } from "./_registry.ts";
import { hasHypervisor, hypervisorProblem } from "../../_hypervisor.ts";
import { listFiles, rawPushBlob, rawPushManifest } from "./_raw.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;

async function withCache<T>(fn: (cacheDir: string) => Promise<T>): Promise<T> {
  const cacheDir = await Deno.makeTempDir({ prefix: "snapvm-oci-cache-" });
  try {
    return await fn(cacheDir);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
}

registryTest("a pushed snapshot pulls into an empty cache byte for byte and loads", async () => {
  await using registry = await startRegistry();
  const pushed = await pushSnapshotFile(GOLDEN, `${registry.host}/golden/testguest:v1`);
  await withCache(async (cacheDir) => {
    const pulled = await pullSnapshotFile(`${registry.host}/golden/testguest:v1`, { cacheDir });
    assert.equal(pulled.digest, pushed.digest);
    assert.equal(pulled.reference, pushed.reference);
    assert.deepEqual(pulled.config, pushed.config);
    assert.deepEqual(pulled.manifest, pushed.manifest);
    const layer = pushed.manifest.layers[0];
    assert.equal(pulled.path, `${cacheDir}/blobs/sha256/${layer.digest.slice(7)}`);
    assert.deepEqual(pulled.layers, [{ descriptor: layer, path: pulled.path, transferred: true }]);
    assert.deepEqual(await Deno.readFile(pulled.path), await Deno.readFile(GOLDEN));
    assert.equal((await Deno.stat(pulled.path)).mode! & 0o777, 0o444, "cached files are read-only");
    const config = pushed.manifest.config;
    assert.equal(
      pulled.bytesReceived,
      layer.size + config.size + (await buildSnapshotArtifact(GOLDEN)).manifestBytes.byteLength,
    );
    // The cache holds exactly the manifest, the config and the layer: no temporary files.
    assert.deepEqual(
      await listFiles(cacheDir),
      [pushed.digest, config.digest, layer.digest].map((d) => `blobs/sha256/${d.slice(7)}`).sort(),
    );

    using snap = Snapshot.fromFile(pulled.path);
    assert.equal(snap.entrypoint, "Call");
    const cached = Snapshot.fromFileCached(pulled.path);
    assert.equal(
      Snapshot.fromFileCached(pulled.path),
      cached,
      "the cached path is stable, so loads are reused",
    );
    if (hasHypervisor) {
      const fns = new HostFunctions().register(
        "Add",
        { params: ["i32", "i32"], returns: "i32" },
        (a, b) => a + b,
      );
      using sbx = MultiUseSandbox.fromSnapshot(cached, fns);
      assert.equal(sbx.call("GetStatic"), 41);
    } else if (Deno.env.get("CI") === "true") {
      assert.fail("no usable hypervisor in CI");
    } else {
      console.error(`!!! ${hypervisorProblem}: SKIPPING running a sandbox from the pulled snapshot !!!`);
    }
    cached.close();
  });
});

registryTest(
  "a cached snapshot is never downloaded again, and pulls by digest need no registry",
  async () => {
    await withCache(async (cacheDir) => {
      let reference: string;
      {
        await using registry = await startRegistry();
        const pushed = await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
        reference = pushed.reference;
        const first = await pullSnapshotFile(`${registry.host}/app:v1`, { cacheDir });
        const again = await pullSnapshotFile(`${registry.host}/app:v1`, { cacheDir });
        assert.equal(again.path, first.path);
        assert.equal(again.layers[0].transferred, false);
        // By tag, only the manifest is fetched again (tags move); config and layer come from the cache.
        assert.equal(again.bytesReceived, (await buildSnapshotArtifact(GOLDEN)).manifestBytes.byteLength);
      }
      // The registry is gone: a pull by digest is served entirely from the cache.
      const offline = await pullSnapshotFile(reference, { cacheDir });
      assert.equal(offline.bytesReceived, 0);
      assert.deepEqual(await Deno.readFile(offline.path), await Deno.readFile(GOLDEN));
      // A tag still needs the registry, and says so with a typed error.
      await assert.rejects(
        () => pullSnapshotFile(reference.replace(/@.*/, ":v1"), { cacheDir }),
        RegistryConnectionError,
      );
    });
  },
);

registryTest(
  "a blob corrupted in the registry's storage is a DigestMismatchError and nothing is cached",
  async () => {
    await using registry = await startRegistry();
    const pushed = await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
    const layer = pushed.manifest.layers[0];
    const data = registry.blobDataPath(layer.digest);
    const bytes = await Deno.readFile(data);
    bytes[bytes.byteLength >> 1] ^= 0x40;
    await Deno.writeFile(data, bytes);
    await withCache(async (cacheDir) => {
      await assert.rejects(() => pullSnapshotFile(`${registry.host}/app:v1`, { cacheDir }), (e) => {
        assert.ok(e instanceof DigestMismatchError, String(e));
        assert.equal(e.what, "layer");
        assert.equal(e.expected, layer.digest);
        assert.notEqual(e.found, layer.digest);
        assert.match(
          e.message,
          /^Digest mismatch for layer: content has sha256:[0-9a-f]{64}, expected sha256:/,
        );
        return true;
      });
      assert.deepEqual(await listFiles(cacheDir), [], "nothing is cached");
    });
  },
);

registryTest("a missing tag is a RegistryError 404 with MANIFEST_UNKNOWN", async () => {
  await using registry = await startRegistry();
  await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
  await withCache(async (cacheDir) => {
    await assert.rejects(() => pullSnapshotFile(`${registry.host}/app:v2`, { cacheDir }), (e) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.status, 404);
      assert.ok(e.hasCode("MANIFEST_UNKNOWN"), e.message);
      assert.match(
        e.message,
        /^Registry refused GET http:\/\/127\.0\.0\.1:\d+\/v2\/app\/manifests\/v2: HTTP 404, expected HTTP 200: MANIFEST_UNKNOWN/,
      );
      return true;
    });
  });
});

registryTest("content that is not a valid snapvm snapshot is refused and never cached", async () => {
  await using registry = await startRegistry();
  const host = registry.host;
  const artifact = await buildSnapshotArtifact(GOLDEN);
  const layerDigest = await rawPushBlob(host, "evil", await Deno.readFile(GOLDEN));
  const layer = {
    mediaType: SNAPSHOT_LAYER_MEDIA_TYPE,
    digest: layerDigest,
    size: artifact.layers[0].descriptor.size,
  };
  const configOf = async (patch: Record<string, unknown>) => {
    const bytes = new TextEncoder().encode(JSON.stringify({ ...artifact.config, ...patch }));
    return {
      mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE,
      digest: await rawPushBlob(host, "evil", bytes),
      size: bytes.byteLength,
    };
  };
  const image = (config: unknown, layers: unknown[]) => ({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config,
    layers,
  });

  // An ordinary container image is not a snapshot.
  const imageConfig = new TextEncoder().encode("{}");
  await rawPushManifest(
    host,
    "evil",
    "image",
    image({
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: await rawPushBlob(host, "evil", imageConfig),
      size: imageConfig.byteLength,
    }, [layer]),
  );
  // A config whose blob hash is not the layer's.
  await rawPushManifest(
    host,
    "evil",
    "lying-config",
    image(await configOf({ blobHash: "0".repeat(64) }), [layer]),
  );
  // A config that is not a config.
  await rawPushManifest(host, "evil", "bad-config", image(await configOf({ fileSize: "big" }), [layer]));
  // A layer descriptor smaller than the blob the registry serves.
  const good = await configOf({});
  await rawPushManifest(host, "evil", "short-layer", image(good, [{ ...layer, size: layer.size - 4096 }]));
  // A layer that is not a snapshot file at all (its config claims otherwise).
  const junk = new Uint8Array(8192).fill(7);
  const junkLayer = {
    mediaType: SNAPSHOT_LAYER_MEDIA_TYPE,
    digest: await rawPushBlob(host, "evil", junk),
    size: junk.byteLength,
  };
  await rawPushManifest(host, "evil", "junk-layer", image(good, [junkLayer]));
  // A Docker manifest.
  await rawPushManifest(host, "evil", "docker", {
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: {
      mediaType: "application/vnd.docker.container.image.v1+json",
      digest: good.digest,
      size: good.size,
    },
    layers: [{ ...layer, mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip" }],
  }, "application/vnd.docker.distribution.manifest.v2+json");

  const cases: [string, (e: unknown) => boolean][] = [
    [
      "image",
      (e) =>
        e instanceof OciContentError && e.kind === "UnsupportedMediaType" && e.field === "config.mediaType",
    ],
    ["lying-config", (e) => e instanceof OciContentError && e.what === "config" && e.field === "blobHash"],
    ["bad-config", (e) => e instanceof OciContentError && e.what === "config" && e.field === "fileSize"],
    ["short-layer", (e) => e instanceof OciContentError && e.kind === "SizeMismatch"],
    ["junk-layer", (e) => e instanceof SnapshotFormatError && e.kind === "BadMagic"],
    [
      "docker",
      (e) => e instanceof OciContentError && e.kind === "UnsupportedMediaType" && e.field === "Content-Type",
    ],
  ];
  for (const [tag, check] of cases) {
    await withCache(async (cacheDir) => {
      await assert.rejects(() => pullSnapshotFile(`${host}/evil:${tag}`, { cacheDir }), (e) => {
        assert.ok(check(e), `${tag}: ${e}`);
        return true;
      });
      assert.deepEqual(await listFiles(cacheDir), [], `${tag}: nothing is cached`);
    });
  }
});

registryTest("inspectRemoteSnapshot reads the config without downloading the layer", async () => {
  await using registry = await startRegistry();
  const pushed = await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
  await withCache(async (cacheDir) => {
    const remote = await inspectRemoteSnapshot(`${registry.host}/app:v1`, { cacheDir });
    assert.deepEqual(remote, {
      reference: pushed.reference,
      digest: pushed.digest,
      manifest: pushed.manifest,
      config: pushed.config,
    });
    assert.deepEqual(encodeSnapshotConfig(remote.config), encodeSnapshotConfig(pushed.config));
    assert.equal(remote.config.header.memory_size, pushed.config.header.memory_size);
    assert.deepEqual(
      await listFiles(cacheDir),
      [pushed.digest, pushed.manifest.config.digest].map((d) => `blobs/sha256/${d.slice(7)}`).sort(),
    );
  });
});

registryTest("an aborted pull rejects with the signal's reason and caches no layer", async () => {
  await using registry = await startRegistry();
  await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`);
  await withCache(async (cacheDir) => {
    const controller = new AbortController();
    const reason = new Error("stopped by the test");
    await assert.rejects(
      () =>
        pullSnapshotFile(`${registry.host}/app:v1`, {
          cacheDir,
          signal: controller.signal,
          onProgress: (p) => {
            if (p.bytes > 0) controller.abort(reason);
          },
        }),
      (e) => e === reason,
    );
    assert.deepEqual(await listFiles(cacheDir), [], "nothing is cached");
  });
});
