/**
 * `Snapshot.pull` and `snapshot.push` against a real registry (Debian's `docker-registry` on 127.0.0.1) and
 * real KVM: push a loaded file or an in-memory snapshot (also as a delta over a pushed base), pull into an
 * empty cache, cold-start from it and call the guest; pulling again downloads nothing; corrupt content is a
 * typed error and caches nothing. Request counts and bytes come from a counting proxy in front of the
 * registry, not from the client's own accounting.
 */
import assert from "node:assert/strict";
import { DigestMismatchError, MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { buildSnapshotArtifact, SNAPSHOT_DELTA_LAYER_MEDIA_TYPE } from "../../../format/oci/mod.ts";
import { hasRegistry, registryTest, startRegistry } from "../../format/oci/_registry.ts";
import { startCuttingProxy } from "../../format/oci/_proxy.ts";
import { listFiles } from "../../format/oci/_raw.ts";
import { vmTest } from "../../_hypervisor.ts";
import { GOLDEN_PATH } from "./_golden.ts";
import { hostFns, testguest, withTempDir } from "./_util.ts";

/** Registers a test needing both the registry and the hypervisor (each skips loudly when missing). */
const test = hasRegistry ? vmTest : registryTest;

const MIB = 1024 * 1024;

function staticOf(snap: Snapshot): number {
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  return sbx.call("GetStatic") as number;
}

test("push a loaded file, pull into an empty cache, cold-start and call; again downloads nothing", async () => {
  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  await withTempDir(async (dir) => {
    const reference = `${proxy.host}/team/guest:v1`;
    {
      using loaded = Snapshot.fromFile(GOLDEN_PATH);
      const pushed = await loaded.push(reference);
      // The file itself was pushed: the same manifest as pushing the path.
      assert.equal(pushed.digest, (await buildSnapshotArtifact(GOLDEN_PATH)).manifestDigest);
      assert.equal(pushed.reference, `${proxy.host}/team/guest@${pushed.digest}`);
    }
    const cacheDir = `${dir}/cache`;
    using snap = await Snapshot.pull(reference, { cacheDir });
    assert.equal(staticOf(snap), 41);
    const cached = await listFiles(cacheDir);
    assert.equal(cached.length, 3); // manifest, config, layer

    const gets = proxy.requests.GET;
    const again = await Snapshot.pull(reference, { cacheDir });
    assert.equal(again, snap, "the same cached path: the verified load is reused");
    assert.equal(proxy.requests.GET - gets, 1, "only the manifest (tags move)");
    assert.deepEqual(await listFiles(cacheDir), cached);
  });
});

test("an in-memory snapshot pushed as a delta over a pushed base sends only the changed pages", async () => {
  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  await withTempDir(async (dir) => {
    const base = `${dir}/base.hls`;
    {
      // Init writes every heap page: 8 MiB of data the delta must not resend.
      using sbx = testguest({ heapSize: 8 * MIB, guestInitArg: 1n }).evolve();
      sbx.call("AddToStatic", 5);
      using snap = sbx.snapshot();
      await snap.toFile(base);
    }
    using baseSnap = Snapshot.fromFile(base);
    const pushedBase = await baseSnap.push(`${proxy.host}/team/app:base`);
    const baseSize = pushedBase.manifest.layers[0].size;
    assert.ok(baseSize > 8 * MIB);

    using sbx = MultiUseSandbox.fromSnapshot(baseSnap, hostFns());
    sbx.call("TouchPages", 20);
    sbx.call("AddToStatic", 2);
    using later = sbx.snapshot();
    const before = proxy.bytes;
    const pushed = await later.push(`${proxy.host}/team/app:v2`, { base });
    const sent = proxy.bytes - before;
    assert.deepEqual(pushed.blobs.map((b) => b.outcome), ["exists", "uploaded", "uploaded"]);
    const delta = pushed.manifest.layers[1];
    assert.equal(delta.mediaType, SNAPSHOT_DELTA_LAYER_MEDIA_TYPE);
    assert.equal(pushed.manifest.layers[0].digest, pushedBase.manifest.layers[0].digest);
    assert.ok(delta.size < MIB, `delta of ${delta.size} bytes`);
    assert.ok(sent > delta.size && sent < delta.size + 64 * 1024, `${sent} bytes sent for ${delta.size}`);

    // Pulled into an empty cache: both layers, loaded and called.
    using pulled = await Snapshot.pull(`${proxy.host}/team/app:v2`, { cacheDir: `${dir}/cache` });
    assert.equal(staticOf(pulled), 7);

    // Without a base, an in-memory snapshot is pushed whole.
    const whole = await later.push(`${proxy.host}/team/app:whole`);
    assert.equal(whole.manifest.layers.length, 1);
    assert.equal(whole.config.blobHash, pushed.config.blobHash);
  });
});

test("a snapshot whose file was replaced since it was loaded pushes its own memory", async () => {
  await using registry = await startRegistry();
  await withTempDir(async (dir) => {
    await Deno.copyFile(GOLDEN_PATH, `${dir}/a.hls`);
    using loaded = Snapshot.fromFile(`${dir}/a.hls`);
    {
      using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      sbx.call("AddToStatic", 1);
      using other = sbx.snapshot();
      await other.toFile(`${dir}/b.hls`);
    }
    await Deno.rename(`${dir}/b.hls`, `${dir}/a.hls`);
    const pushed = await loaded.push(`${registry.host}/team/guest:v1`);
    using pulled = await Snapshot.pull(pushed.reference, { cacheDir: `${dir}/cache` });
    assert.equal(staticOf(pulled), 41, "the loaded snapshot's memory, not the new file's");
  });
});

test("a corrupt blob in the registry's storage is a DigestMismatchError and nothing is cached", async () => {
  await using registry = await startRegistry();
  await withTempDir(async (dir) => {
    using loaded = Snapshot.fromFile(GOLDEN_PATH);
    const pushed = await loaded.push(`${registry.host}/team/guest:v1`);
    const data = registry.blobDataPath(pushed.manifest.layers[0].digest);
    const bytes = await Deno.readFile(data);
    bytes[4096 * 5] ^= 0x80;
    await Deno.writeFile(data, bytes);
    await assert.rejects(
      () => Snapshot.pull(`${registry.host}/team/guest:v1`, { cacheDir: `${dir}/cache` }),
      DigestMismatchError,
    );
    assert.deepEqual(await listFiles(`${dir}/cache`), []);
  });
});
