import assert from "node:assert/strict";
import { buildBlake3 } from "../../../format/blake3/build_library.ts";
import { toolTest } from "./_helpers.ts";

toolTest("buildBlake3 builds once, then reuses the up-to-date library", ["gcc", "sources"], async () => {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-build-" });
  try {
    const path = await buildBlake3(dir);
    assert.equal(path, `${dir}/libblake3.so`);
    const before = Deno.statSync(path).mtime?.getTime();
    assert.equal(await buildBlake3(dir), path);
    assert.equal(Deno.statSync(path).mtime?.getTime(), before, "must not rebuild");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildBlake3 returns null, with one line on stderr, without sources", async () => {
  const lines: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args);
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await buildBlake3(dir, { sourceDir: "/nonexistent/blake3/c" }), null);
  } finally {
    console.error = original;
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(lines.length, 1);
  assert.match(String(lines[0][0]), /sources not found/);
});
