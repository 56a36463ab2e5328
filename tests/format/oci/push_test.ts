import assert from "node:assert/strict";
import { SnapshotFormatError } from "../../../format/mod.ts";
import {
  buildSnapshotArtifact,
  DigestMismatchError,
  pullSnapshotFile,
  type PushProgress,
  pushSnapshotFile,
  RegistryError,
} from "../../../format/oci/mod.ts";
import { registryTest, startRegistry } from "./_registry.ts";
import { startCuttingProxy } from "./_proxy.ts";
import { listFiles } from "./_raw.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;

async function pullBytes(reference: string): Promise<Uint8Array> {
  const cacheDir = await Deno.makeTempDir({ prefix: "snapvm-oci-cache-" });
  try {
    return await Deno.readFile((await pullSnapshotFile(reference, { cacheDir })).path);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
}

registryTest("push uploads layer and config once; a second push sends only the manifest", async () => {
  await using registry = await startRegistry();
  const artifact = await buildSnapshotArtifact(GOLDEN);
  const layer = artifact.manifest.layers[0];
  const progress: PushProgress[] = [];
  const first = await pushSnapshotFile(GOLDEN, `${registry.host}/team/app:v1`, {
    chunkSize: 1 << 20,
    onProgress: (p) => progress.push(p),
  });
  assert.equal(first.digest, artifact.manifestDigest);
  assert.equal(first.reference, `${registry.host}/team/app@${artifact.manifestDigest}`);
  assert.equal(first.tag, "v1");
  assert.deepEqual(first.blobs.map((b) => [b.digest, b.outcome]), [
    [layer.digest, "uploaded"],
    [artifact.manifest.config.digest, "uploaded"],
  ]);
  assert.equal(
    first.bytesSent,
    layer.size + artifact.configBytes.byteLength + artifact.manifestBytes.byteLength,
  );
  assert.equal(first.uploadRetries, 0);
  // 1 MiB chunks of a 2.3 MB file: three confirmed chunks.
  assert.deepEqual(progress.map((p) => p.bytes), [1 << 20, 2 << 20, layer.size]);
  assert.ok(progress.every((p) => p.digest === layer.digest && p.total === layer.size));

  const second = await pushSnapshotFile(GOLDEN, `${registry.host}/team/app:v2`);
  assert.equal(second.digest, first.digest);
  assert.deepEqual(second.blobs.map((b) => b.outcome), ["exists", "exists"]);
  assert.equal(second.bytesSent, artifact.manifestBytes.byteLength);

  // Without a tag, push uses latest.
  const latest = await pushSnapshotFile(GOLDEN, `${registry.host}/team/app`);
  assert.equal(latest.tag, "latest");
  assert.deepEqual(await pullBytes(`${registry.host}/team/app`), await Deno.readFile(GOLDEN));
});

registryTest("push mounts blobs from another repository instead of uploading them", async () => {
  await using registry = await startRegistry();
  await pushSnapshotFile(GOLDEN, `${registry.host}/base/app:v1`);
  const mounted = await pushSnapshotFile(GOLDEN, `${registry.host}/other/app:v1`, { mountFrom: "base/app" });
  assert.deepEqual(mounted.blobs.map((b) => b.outcome), ["mounted", "mounted"]);
  assert.equal(mounted.bytesSent, (await buildSnapshotArtifact(GOLDEN)).manifestBytes.byteLength);
  assert.deepEqual(await pullBytes(`${registry.host}/other/app:v1`), await Deno.readFile(GOLDEN));
});

registryTest("an upload whose connection breaks mid-chunk restarts and completes", async () => {
  await using registry = await startRegistry();
  // The first cut falls inside the third 256 KiB chunk of the layer, the second inside its resend. The
  // registry has then stored part of the chunk and refuses the session: push starts a new one.
  await using proxy = startCuttingProxy(registry.host, { cutAtBytes: [700 * 1024, 800 * 1024] });
  const pushed = await pushSnapshotFile(GOLDEN, `${proxy.host}/app:v1`, { chunkSize: 256 * 1024 });
  assert.equal(proxy.cuts, 2);
  assert.ok(pushed.uploadRetries >= 1, `retries: ${pushed.uploadRetries}`);
  assert.ok(proxy.requests.POST >= 3, `a fresh upload session was opened: ${JSON.stringify(proxy.requests)}`);
  assert.deepEqual(await pullBytes(`${registry.host}/app:v1`), await Deno.readFile(GOLDEN));
});

registryTest(
  "an upload whose connection breaks between chunks resumes where the registry stands",
  async () => {
    await using registry = await startRegistry();
    // The third PATCH and its resend are cut before their first byte: the registry still holds two whole
    // chunks, says so (Range: 0-524287), and the upload continues from there in the same session.
    await using proxy = startCuttingProxy(registry.host, { cutPatches: [3, 4] });
    const pushed = await pushSnapshotFile(GOLDEN, `${proxy.host}/app:v1`, { chunkSize: 256 * 1024 });
    assert.equal(proxy.cuts, 2);
    assert.ok(pushed.uploadRetries >= 1, `retries: ${pushed.uploadRetries}`);
    assert.equal(proxy.requests.POST, 2, `no new session (one per blob): ${JSON.stringify(proxy.requests)}`);
    assert.ok(proxy.requests.GET >= 1, "the upload's state was asked for");
    assert.deepEqual(await pullBytes(`${registry.host}/app:v1`), await Deno.readFile(GOLDEN));
  },
);

registryTest("an aborted push leaves no tag and no upload session, and a new push succeeds", async () => {
  await using registry = await startRegistry();
  const controller = new AbortController();
  const reason = new Error("stopped by the test");
  await assert.rejects(
    () =>
      pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`, {
        chunkSize: 256 * 1024,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.bytes >= 512 * 1024) controller.abort(reason);
        },
      }),
    (e) => e === reason,
  );
  await assert.rejects(() => pullBytes(`${registry.host}/app:v1`), (e) => {
    assert.ok(e instanceof RegistryError && e.status === 404 && e.hasCode("MANIFEST_UNKNOWN"), String(e));
    return true;
  });
  // Cancelled at the registry: its data and start time are gone. (Registry 2.8 writes the hash state once
  // more after deleting a cancelled upload, so a stray hashstates file stays; the session cannot resume.)
  const uploads = `${registry.storage}/docker/registry/v2/repositories/app/_uploads`;
  const left = await listFiles(uploads);
  assert.deepEqual(left.filter((f) => !f.includes("/hashstates/")), [], `upload files left: ${left}`);

  await pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`, { chunkSize: 256 * 1024 });
  assert.deepEqual(await pullBytes(`${registry.host}/app:v1`), await Deno.readFile(GOLDEN));
});

registryTest(
  "push refuses files that are not snapshots and digests that do not match, before sending",
  async () => {
    await using registry = await startRegistry();
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/x.hls`, new Uint8Array(8192));
      await assert.rejects(
        () => pushSnapshotFile(`${dir}/x.hls`, `${registry.host}/app:v1`),
        SnapshotFormatError,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const wrong = `sha256:${"0".repeat(64)}`;
    await assert.rejects(() => pushSnapshotFile(GOLDEN, `${registry.host}/app@${wrong}`), (e) => {
      assert.ok(e instanceof DigestMismatchError);
      assert.equal(e.expected, wrong);
      return true;
    });
    await assert.rejects(
      () => pushSnapshotFile(GOLDEN, `${registry.host}/app:v1`, { chunkSize: 10 }),
      /chunkSize is 10, expected an integer in 4096\.\.268435456/,
    );
    assert.deepEqual(await listFiles(`${registry.storage}/docker/registry/v2/repositories`), []);
  },
);
