/**
 * The package as a consumer gets it: exactly the files `deno publish` would upload, served over real HTTP on
 * 127.0.0.1, used from a folder that has no access to this checkout. The served CLI creates, builds,
 * snapshots, inspects, verifies and runs a guest, pushes it to a registry and pulls it back, each step with
 * the minimal Deno permissions the README documents; then consumer scripts import the served `mod.ts` and
 * `guest/sdk.ts` with their documented permissions, and one step with a permission left out must fail.
 *
 * Needs KVM and gcc (skipped loudly without them, failing in CI), and Debian's `docker-registry` for the
 * push and pull steps.
 */
import assert from "node:assert/strict";
import { needsTest } from "../cli/_cli.ts";
import { deno, type Run, servePackage } from "./_package.ts";
import { hasRegistry, REGISTRY_BINARY, startRegistry } from "../format/oci/_registry.ts";

/** What `blake3Backend()` returns for a consumer of the published package on this machine (x86-64). */
const EXPECTED_CONSUMER_BLAKE3_BACKEND = "native";

/** A consumer's script: each mode is one operation, run under that operation's documented permissions. */
function consumerScript(base: string): string {
  return `import { blake3Backend, MultiUseSandbox, Snapshot, UninitializedSandbox } from "${base}/mod.ts";
import { exampleGuestUrl, loadGuest } from "${base}/guest/sdk.ts";

const [mode, a, b] = Deno.args;
if (mode === "evolve") {
  using sbx = new UninitializedSandbox(a).evolve();
  using snap = sbx.snapshot();
  sbx.call("Greet", "forgotten");
  sbx.restore(snap);
  console.log(sbx.call("Greet", "evolve"));
} else if (mode === "toFile") {
  using sbx = new UninitializedSandbox(a).evolve();
  sbx.call("Greet", "before the snapshot");
  await sbx.snapshot().toFile(b);
  console.log("saved");
} else if (mode === "fromFile") {
  for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
    using snap = load(a);
    using sbx = MultiUseSandbox.fromSnapshot(snap);
    console.log(sbx.call("Greet", "fromFile"));
  }
  console.log(Snapshot.inspectFile(a).entrypoint);
  console.log(blake3Backend());
} else if (mode === "push") {
  using snap = Snapshot.fromFile(a);
  console.log((await snap.push(b)).reference);
} else if (mode === "pushMemory") {
  using sbx = new UninitializedSandbox(a).evolve();
  using snap = sbx.snapshot();
  console.log((await snap.push(b)).blobs.map((blob) => blob.outcome).join(" "));
} else if (mode === "pull") {
  using snap = await Snapshot.pull(a, { cacheDir: b });
  using sbx = MultiUseSandbox.fromSnapshot(snap);
  console.log(sbx.call("Greet", "pulled"));
} else if (mode === "example") {
  using sbx = new UninitializedSandbox(await loadGuest(exampleGuestUrl("hello"))).evolve();
  console.log(sbx.call("Hello", "example"));
}
`;
}

needsTest(
  ["kvm", "gcc"],
  "consumer: the published file set over HTTP, used with minimal permissions",
  async () => {
    await using pkg = await servePackage();
    const { base, host, served, refused } = pkg;
    const work = `${pkg.tmp}/work`;
    const scratch = `${pkg.tmp}/scratch`; // TMPDIR of the consumer processes
    const cli = `${base}/cli/main.ts`;
    const env = { TMPDIR: scratch, NO_COLOR: "1" };
    // Deno asks for import permission for any host outside its default list (jsr.io, deno.land, ...).
    const imp = `--allow-import=${host}`;
    const step = async (name: string, args: string[], cwd = `${work}/proj`): Promise<Run> => {
      const r = await deno(args, cwd, env);
      assert.equal(r.code, 0, `${name} failed (exit ${r.code}):\n${r.stderr}`);
      return r;
    };

    {
      // new: read and write on the new directory only.
      await step("new", ["run", imp, "--allow-read=proj", "--allow-write=proj", cli, "new", "proj"], work);
      // build: the SDK comes from the server (net), gcc runs in a temporary directory (write).
      await step("build", [
        "run",
        imp,
        `--allow-net=${host}`,
        "--allow-read=.",
        `--allow-write=.,${scratch}`,
        "--allow-run=gcc",
        cli,
        "build",
        "guest.c",
        "-o",
        "guest.elf",
      ]);
      assert.ok(served.has("guest/include/snapvm.h") && served.has("guest/runtime/start.S"));
      // snapshot: read and write on the directory of the snapshot (toFile writes a temporary file there,
      // reads it back and fsyncs the directory), FFI for KVM.
      await step("snapshot", [
        "run",
        imp,
        "--allow-read=.",
        "--allow-write=.",
        "--allow-ffi",
        cli,
        "snapshot",
        "guest.elf",
        "-o",
        "guest.hls",
        "--call",
        "Greet",
        "warm-up",
      ]);
      const readOnly = ["run", imp, "--allow-read=guest.hls", "--allow-ffi", cli];
      const info = JSON.parse(
        (await step("inspect", [...readOnly, "inspect", "guest.hls", "--json"])).stdout,
      );
      assert.equal(info.entrypoint, "Call");
      assert.equal(info.compatible, true);
      assert.match((await step("verify", [...readOnly, "verify", "guest.hls"])).stdout, /^ok: guest\.hls/);
      const ran = await step("run", [...readOnly, "run", "guest.hls", "Greet", "consumer"]);
      assert.equal(ran.stdout, "Hello, consumer! (greeting 2)\n");
      const bench = await step("bench", [
        ...readOnly,
        "bench",
        "guest.hls",
        "-n",
        "3",
        "--call",
        "Add",
        "1",
        "2",
      ]);
      assert.match(bench.stdout, /3 cold starts/);
      const exampleRun = [
        "run",
        imp,
        `--allow-net=${host}`,
        "--allow-ffi",
        cli,
        "run",
        "example:hello",
        "Hello",
        "x",
      ];
      assert.equal((await step("run example:hello", exampleRun)).stdout, "Hello, x!\n");

      // The library, imported from the server by a consumer's own script.
      await Deno.writeTextFile(`${work}/proj/consumer.ts`, consumerScript(base));
      const evolve = await step("evolve", [
        "run",
        imp,
        "--allow-read=guest.elf",
        "--allow-ffi",
        "consumer.ts",
        "evolve",
        "guest.elf",
      ]);
      assert.equal(evolve.stdout, "Hello, evolve! (greeting 1)\n");
      await Deno.mkdir(`${work}/proj/out`);
      await step("toFile", [
        "run",
        imp,
        "--allow-read=guest.elf,out",
        "--allow-write=out",
        "--allow-ffi",
        "consumer.ts",
        "toFile",
        "guest.elf",
        "out/copy.hls",
      ]);
      const loaded = await step("fromFile", [
        "run",
        imp,
        "--allow-read=out/copy.hls",
        "--allow-ffi",
        "consumer.ts",
        "fromFile",
        "out/copy.hls",
      ]);
      const lines = loaded.stdout.trim().split("\n");
      assert.deepEqual(lines.slice(0, 4), [...Array(3).fill("Hello, fromFile! (greeting 2)"), "Call"]);
      assert.equal(lines[4], EXPECTED_CONSUMER_BLAKE3_BACKEND);
      const example = await step("example", [
        "run",
        imp,
        `--allow-net=${host}`,
        "--allow-ffi",
        "consumer.ts",
        "example",
      ]);
      assert.equal(example.stdout, "Hello, example!\n");

      // The permissions are minimal: toFile without read access to the directory is refused.
      const denied = await deno(
        [
          "run",
          imp,
          "--allow-read=guest.elf",
          "--allow-write=out",
          "--allow-ffi",
          "consumer.ts",
          "toFile",
          "guest.elf",
          "out/x.hls",
        ],
        `${work}/proj`,
        env,
      );
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /NotCapable: Requires read access to ".*out/);

      // Registries: the CLI's push and pull, and the library's, each with its documented permissions.
      if (!hasRegistry) {
        if (Deno.env.get("CI") === "true") assert.fail(`${REGISTRY_BINARY} is missing in CI`);
        console.error(`!!! ${REGISTRY_BINARY} not found: SKIPPING the consumer's push and pull steps !!!`);
      } else {
        await using registry = await startRegistry();
        const net = `--allow-net=${registry.host}`;
        const ref = `${registry.host}/consumer/guest:v1`;
        const pushed = await step("push", [
          "run",
          imp,
          "--allow-read=guest.hls",
          net,
          cli,
          "push",
          "guest.hls",
          ref,
        ]);
        assert.match(pushed.stdout, /@sha256:[0-9a-f]{64}\n$/);
        const cacheFlags = ["--allow-read=cache", "--allow-write=cache"];
        const pulled = await step("pull", [
          "run",
          imp,
          net,
          ...cacheFlags,
          cli,
          "pull",
          ref,
          "--cache-dir",
          "cache",
        ]);
        const ranPulled = await step("run pulled", [
          "run",
          imp,
          `--allow-read=${pulled.stdout.trim()}`,
          "--allow-ffi",
          cli,
          "run",
          pulled.stdout.trim(),
          "Greet",
          "again",
        ]);
        assert.equal(ranPulled.stdout, "Hello, again! (greeting 2)\n");
        await step("export", [
          "run",
          imp,
          "--allow-read=guest.hls,layout",
          "--allow-write=layout",
          cli,
          "export",
          "guest.hls",
          "--oci-layout",
          "layout",
        ]);
        await Deno.mkdir(`${work}/proj/imp`);
        await step("import", [
          "run",
          imp,
          "--allow-read=layout,cache,imp",
          "--allow-write=cache,imp",
          cli,
          "import",
          "layout",
          "-o",
          "imp/guest.hls",
          "--cache-dir",
          "cache",
        ]);
        assert.deepEqual(
          await Deno.readFile(`${work}/proj/imp/guest.hls`),
          await Deno.readFile(`${work}/proj/guest.hls`),
        );
        const libPushed = await step("Snapshot.push", [
          "run",
          imp,
          "--allow-read=guest.hls",
          "--allow-ffi",
          net,
          "consumer.ts",
          "push",
          "guest.hls",
          `${registry.host}/consumer/lib:v1`,
        ]);
        assert.equal(
          libPushed.stdout.split("@")[1],
          pushed.stdout.split("@")[1],
          "the same file, the same digest",
        );
        const memory = await step("Snapshot.push (in memory)", [
          "run",
          imp,
          `--allow-read=guest.elf,${scratch}`,
          `--allow-write=${scratch}`,
          "--allow-ffi",
          net,
          "consumer.ts",
          "pushMemory",
          "guest.elf",
          `${registry.host}/consumer/memory:v1`,
        ]);
        assert.equal(memory.stdout, "uploaded uploaded\n");
        const libPulled = await step("Snapshot.pull", [
          "run",
          imp,
          net,
          "--allow-read=libcache",
          "--allow-write=libcache",
          "--allow-ffi",
          "consumer.ts",
          "pull",
          ref,
          "libcache",
        ]);
        assert.equal(libPulled.stdout, "Hello, pulled! (greeting 2)\n");
      }

      // The skeleton's own tasks work as generated.
      for (const task of ["snapshot", "start"]) await step(`deno task ${task}`, ["task", task]);
      const call = await step("deno task call", ["task", "call", "Add", "2", "40"]);
      assert.equal(call.stdout.trim().split("\n").pop(), "42");

      // Nothing the consumer asked for was missing from the published set.
      assert.deepEqual([...refused], []);
    }
  },
);
