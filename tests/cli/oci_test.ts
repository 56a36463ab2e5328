/**
 * The registry and image-layout commands against a real registry (Debian's `docker-registry` on 127.0.0.1):
 * push a base and a delta, pull into an empty cache and run from the printed path, pull again without a
 * download, pull and import to a file (a delta with its base beside it), export, credentials from standard
 * input and the environment (never printed), and typed errors as one line with their exit codes.
 */
import assert from "node:assert/strict";
import { HostFunctions, MultiUseSandbox, Snapshot, UninitializedSandbox } from "../../mod.ts";
import { EXIT } from "../../cli/_errors.ts";
import { guestPath } from "../_hypervisor.ts";
import { hasRegistry, htpasswdLine, registryTest, startRegistry } from "../format/oci/_registry.ts";
import { startCuttingProxy } from "../format/oci/_proxy.ts";
import { listFiles } from "../format/oci/_raw.ts";
import { needsTest, runCli } from "./_cli.ts";

/** A test needing the registry and KVM (each skips loudly when missing, and fails in CI). */
const test = (name: string, fn: () => Promise<void>) =>
  hasRegistry ? needsTest(["kvm"], name, fn) : registryTest(name, fn);

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split("\n").filter((l) => l.startsWith("snapvm: "));
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], pattern);
}

/** `base.hls` (the test guest, static 5) and `delta.hls` over it (static 7), with no host functions. */
async function writeChain(dir: string): Promise<void> {
  const none = new HostFunctions();
  {
    using sbx = new UninitializedSandbox(guestPath("testguest"), { heapSize: 4 << 20 }, none).evolve();
    sbx.call("AddToStatic", 5);
    using snap = sbx.snapshot();
    await snap.toFile(`${dir}/base.hls`);
  }
  using base = Snapshot.fromFile(`${dir}/base.hls`);
  using sbx = MultiUseSandbox.fromSnapshot(base, none);
  sbx.call("AddToStatic", 2);
  using snap = sbx.snapshot();
  await snap.toFile(`${dir}/delta.hls`, { base: `${dir}/base.hls` });
}

test("push, pull, run, pull -o, export, import: a delta and its base", async () => {
  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  const dir = await Deno.makeTempDir({ prefix: "snapvm-cli-oci-" });
  try {
    await writeChain(dir);
    const base = await runCli(["push", "base.hls", `${proxy.host}/team/app:base`], dir);
    assert.equal(base.code, 0, base.stderr);
    assert.match(base.stdout, new RegExp(`^${proxy.host}/team/app@sha256:[0-9a-f]{64}\n$`));

    const before = proxy.bytes;
    const pushed = await runCli(["push", "delta.hls", `${proxy.host}/team/app:v2`], dir);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stderr, /^pushed delta\.hls as .*\/team\/app:v2: 2 layers \(exists, uploaded\), /m);
    const deltaSize = (await Deno.stat(`${dir}/delta.hls`)).size;
    assert.ok(proxy.bytes - before < deltaSize + 32 * 1024, `${proxy.bytes - before} bytes for ${deltaSize}`);

    const pulled = await runCli(["pull", `${proxy.host}/team/app:v2`, "--cache-dir", "cache"], dir);
    assert.equal(pulled.code, 0, pulled.stderr);
    const path = pulled.stdout.trim();
    assert.match(path, /^cache\/chains\/sha256\/[0-9a-f]{64}\/[0-9a-f]{64}\.hls$/);
    assert.match(pulled.stderr, /2 layers \(2 downloaded\)/);
    const ran = await runCli(["run", path, "GetStatic"], dir);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout, "7\n");

    const gets = proxy.requests.GET;
    const again = await runCli(["pull", `${proxy.host}/team/app:v2`, "--cache-dir", "cache"], dir);
    assert.equal(again.stdout.trim(), path);
    assert.equal(proxy.requests.GET - gets, 1, "only the manifest");

    await Deno.mkdir(`${dir}/out`);
    const out = await runCli([
      "pull",
      `${proxy.host}/team/app:v2`,
      "--cache-dir",
      "cache",
      "-o",
      "out/app.hls",
    ], dir);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, "out/app.hls\n");
    assert.deepEqual(await listFiles(`${dir}/out`), ["app.hls", "base.hls"]);
    assert.equal((await Deno.stat(`${dir}/out/app.hls`)).mode! & 0o777, 0o644);
    assert.equal((await runCli(["run", "out/app.hls", "GetStatic"], dir)).stdout, "7\n");
    // Again: the base already there is kept; a different file under the base's name is not replaced.
    assert.equal(
      (await runCli(["pull", `${proxy.host}/team/app:v2`, "--cache-dir", "cache", "-o", "out/app.hls"], dir))
        .code,
      0,
    );
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(`${dir}/other/base.hls`, "mine");
    const clash = await runCli([
      "pull",
      `${proxy.host}/team/app:v2`,
      "--cache-dir",
      "cache",
      "-o",
      "other/app.hls",
    ], dir);
    assert.equal(clash.code, EXIT.failed);
    assertOneLine(clash.stderr, /^snapvm: Cannot write the base other\/base\.hls: a different file is there/);
    assert.equal(await Deno.readTextFile(`${dir}/other/base.hls`), "mine");

    const exported = await runCli(["export", "delta.hls", "--oci-layout", "layout", "--tag", "v2"], dir);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /^layout@sha256:[0-9a-f]{64}\n$/);
    assert.equal(exported.stdout.split("@")[1], pushed.stdout.split("@")[1], "the same manifest as the push");
    await Deno.mkdir(`${dir}/imp`);
    const imported = await runCli([
      "import",
      "layout",
      "--tag",
      "v2",
      "-o",
      "imp/x.hls",
      "--cache-dir",
      "cache2",
    ], dir);
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual(await listFiles(`${dir}/imp`), ["base.hls", "x.hls"]);
    assert.equal((await runCli(["run", "imp/x.hls", "GetStatic"], dir)).stdout, "7\n");
    const noTag = await runCli(["import", "layout", "-o", "imp/y.hls", "--cache-dir", "cache2"], dir);
    assert.equal(noTag.code, EXIT.failed);
    assertOneLine(noTag.stderr, /has no manifest tagged "latest" \(tags: v2\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

registryTest("registry errors are one line with their exit code; credentials are never printed", async () => {
  const password = "s3cret-Pa55";
  await using registry = await startRegistry({ auth: { htpasswd: htpasswdLine("ci", password) } });
  const dir = await Deno.makeTempDir({ prefix: "snapvm-cli-oci-" });
  const golden = new URL("../golden/testguest-call.hls", import.meta.url).pathname;
  try {
    const ref = `${registry.host}/team/guest:v1`;
    const noAuth = await runCli(["push", golden, ref], dir);
    assert.equal(noAuth.code, EXIT.failed);
    assertOneLine(noAuth.stderr, /^snapvm: .*401/);

    const stdin = await runCli(
      ["push", golden, ref, "--username", "ci", "--password-stdin"],
      dir,
      undefined,
      `${password}\n`,
    );
    assert.equal(stdin.code, 0, stdin.stderr);
    const env = { SNAPVM_REGISTRY_USERNAME: "ci", SNAPVM_REGISTRY_PASSWORD: password };
    const pulled = await runCli(["pull", ref, "--cache-dir", "cache"], dir, env);
    assert.equal(pulled.code, 0, pulled.stderr);
    const wrong = await runCli(["pull", ref, "--cache-dir", "cache"], dir, {
      ...env,
      SNAPVM_REGISTRY_PASSWORD: "nope-" + password,
    });
    assert.equal(wrong.code, EXIT.failed);
    assertOneLine(wrong.stderr, /^snapvm: .*401/);
    for (const r of [noAuth, stdin, pulled, wrong]) {
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(password), "the password is never printed");
    }

    const missing = await runCli(
      ["pull", `${registry.host}/team/guest:v9`, "--cache-dir", "cache"],
      dir,
      env,
    );
    assert.equal(missing.code, EXIT.failed);
    assertOneLine(
      missing.stderr,
      /^snapvm: Registry refused GET .*manifests\/v9: HTTP 404.*MANIFEST_UNKNOWN/,
    );

    // Corrupt the layer in the registry's storage: a digest mismatch, and nothing cached.
    const digest = (await runCli(["push", golden, ref], dir, env)).stdout.trim().split("@")[1];
    const manifest = JSON.parse(
      await (await fetch(`http://${registry.host}/v2/team/guest/manifests/${digest}`, {
        headers: {
          Accept: "application/vnd.oci.image.manifest.v1+json",
          Authorization: `Basic ${btoa(`ci:${password}`)}`,
        },
      })).text(),
    );
    const data = registry.blobDataPath(manifest.layers[0].digest);
    const bytes = await Deno.readFile(data);
    bytes[8192] ^= 1;
    await Deno.writeFile(data, bytes);
    const corrupt = await runCli(["pull", ref, "--cache-dir", "fresh"], dir, env);
    assert.equal(corrupt.code, EXIT.failed);
    assertOneLine(corrupt.stderr, /^snapvm: Digest mismatch for layer: content has sha256:/);
    assert.deepEqual(await listFiles(`${dir}/fresh`), []);

    const usage: [string[], RegExp][] = [
      [["pull", "Bad/Ref:v1"], /^snapvm: Invalid OCI reference .*\(see 'snapvm pull --help'\)$/],
      [["push", golden], /expected a snapshot file and a reference/],
      [["push", golden, ref, "--password-stdin"], /--password-stdin needs --username/],
      [["push", golden, ref, "--chunk-size", "1k"], /--chunk-size is 1k, expected 4k to 256m/],
      [["export", golden], /--oci-layout <dir> is required/],
      [["import", "a", "--tag", "x", "--digest", "sha256:00"], /give --tag or --digest, not both/],
    ];
    for (const [args, pattern] of usage) {
      const r = await runCli(args, dir);
      assert.equal(r.code, EXIT.usage, `${args.join(" ")}: ${r.stderr}`);
      assertOneLine(r.stderr, pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
