import assert from "node:assert/strict";
import { blake3, BLAKE3_LIBRARY_ENV, blake3Backend, blake3Hex, blake3Info } from "../../format/blake3.ts";
import { MAX_THREADS } from "../../format/blake3/_native.ts";
import { buildBlake3 } from "../../format/blake3/build_library.ts";
import {
  b3sum,
  BOUNDARY_LENGTHS,
  hex,
  OFFICIAL_VECTORS,
  pattern,
  pseudoRandom,
  toolTest,
} from "./blake3/_helpers.ts";

const MIB = 1 << 20;
const repoRoot = new URL("../../", import.meta.url);

Deno.test("blake3() and blake3Hex() give the official digests", () => {
  for (const [length, expected] of OFFICIAL_VECTORS) {
    assert.equal(blake3Hex(pattern(length)), expected, `${length} bytes`);
    assert.equal(hex(blake3(pattern(length))), expected);
  }
});

Deno.test("with every permission the built-in kernel runs, on every core", () => {
  assert.equal(blake3Backend(), "native");
  const info = blake3Info();
  assert.equal(info.backend, "native");
  assert.match(info.implementation, /^BLAKE3 1\.\d+\.\d+ \(C\), built-in x86_64-sysv kernel$/);
  assert.equal(info.threads, Math.min(MAX_THREADS, navigator.hardwareConcurrency));
  assert.deepEqual(info.skipped, []);
});

toolTest("blake3() agrees with b3sum at tree boundaries and on multi-threaded sizes", ["b3sum"], async () => {
  for (const length of [...BOUNDARY_LENGTHS, 8 * MIB, 8 * MIB + 1, 21 * MIB + 1023]) {
    const data = pseudoRandom(length, 7 * length + 1);
    assert.equal(blake3Hex(data), await b3sum(data), `${length} bytes`);
  }
});

/** What a probe script saw: its backend, why others were skipped, and every permission Deno checked. */
interface Probe {
  backend: string;
  skipped: string[];
  checked: { permission: string; value: string | null }[];
}

/**
 * Runs a script that imports the package's root module from `root` (a `file:` or `http:` URL of the
 * repository) and prints `blake3Backend()`, with exactly `flags`. Deno logs every
 * permission check (granted or not) to DENO_AUDIT_PERMISSIONS; a check of a permission that is not granted is
 * what would prompt in a terminal, so the log shows that none happens.
 */
async function probe(root: string, flags: string[], env: Record<string, string> = {}): Promise<Probe> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-probe-" });
  try {
    const script = `${dir}/probe.ts`;
    await Deno.writeTextFile(
      script,
      `import { blake3Backend } from "${root}mod.ts";\n` +
        `import { blake3Info } from "${root}format/blake3.ts";\n` +
        `console.log(JSON.stringify({ backend: blake3Backend(), skipped: blake3Info().skipped }));\n`,
    );
    const audit = `${dir}/audit.jsonl`;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-lock", ...flags, script],
      cwd: dir,
      env: { ...env, DENO_AUDIT_PERMISSIONS: audit },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const result = JSON.parse(new TextDecoder().decode(output.stdout));
    let log = "";
    try {
      log = await Deno.readTextFile(audit);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // no check at all: no log
    }
    const checked = log.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
    return { ...result, checked };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const localModule = repoRoot.href;

function onlyChecked(result: Probe, allowed: string[]): void {
  const others = result.checked.filter((entry) => !allowed.includes(entry.permission));
  assert.deepEqual(others, [], `only ${allowed.join(", ")} may be checked`);
}

Deno.test("with only --allow-ffi --allow-read the kernel runs and nothing else is asked for", async () => {
  const result = await probe(localModule, ["--allow-ffi", "--allow-read"], { [BLAKE3_LIBRARY_ENV]: "/x.so" });
  assert.equal(result.backend, "native");
  assert.deepEqual(result.skipped, []);
  onlyChecked(result, ["ffi"]);
  assert.ok(result.checked.length > 0, "the audit log works");
});

Deno.test("with no permission at all: WASM, and no permission is even checked", async () => {
  const result = await probe(localModule, [], { [BLAKE3_LIBRARY_ENV]: "/x.so" });
  assert.equal(result.backend, "wasm");
  assert.deepEqual(result.skipped, [
    "native: --allow-ffi not granted",
    "library libblake3.so.0: --allow-ffi not granted",
    "library libblake3.so: --allow-ffi not granted",
  ]);
  onlyChecked(result, []);
});

Deno.test("$SNAPVM_BLAKE3_LIB is read only with --allow-env, and a bad one is skipped", async () => {
  const flags = ["--allow-ffi", `--allow-env=${BLAKE3_LIBRARY_ENV}`];
  const result = await probe(localModule, flags, { [BLAKE3_LIBRARY_ENV]: "/nonexistent/libblake3.so" });
  assert.equal(result.backend, "native");
  assert.equal(result.skipped.length, 1);
  assert.match(result.skipped[0], /^library \/nonexistent\/libblake3\.so: /);
  onlyChecked(result, ["ffi", "env"]);
});

toolTest("$SNAPVM_BLAKE3_LIB selects that C library", ["gcc", "sources"], async () => {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-lib-" });
  try {
    const path = await buildBlake3(dir);
    assert.ok(path !== null);
    const result = await probe(localModule, ["--allow-ffi", "--allow-env"], { [BLAKE3_LIBRARY_ENV]: path });
    assert.equal(result.backend, "library");
    // Without --allow-env the variable is not consulted.
    assert.equal(
      (await probe(localModule, ["--allow-ffi"], { [BLAKE3_LIBRARY_ENV]: path })).backend,
      "native",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("imported over HTTP from 127.0.0.1, the package hashes natively with --allow-ffi only", async () => {
  // The repository served as-is, the way a consumer imports a published copy.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(new URL(`.${path}`, repoRoot));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const origin = `127.0.0.1:${server.addr.port}`;
    const result = await probe(`http://${origin}/`, [
      `--allow-import=${origin}`,
      "--allow-ffi",
      "--allow-read",
    ]);
    assert.equal(result.backend, "native");
    onlyChecked(result, ["import", "ffi"]);
  } finally {
    await server.shutdown();
  }
});
