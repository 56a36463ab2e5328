import assert from "node:assert/strict";
import {
  absolutePath,
  blake3SourceVersion,
  compareVersions,
  findBlake3Sources,
  joinPath,
  pathExists,
} from "../../../format/blake3/_sources.ts";
import { toolTest } from "./_helpers.ts";

Deno.test("paths and versions", () => {
  assert.equal(joinPath("/a/", "/b", "c"), "/a/b/c");
  assert.equal(absolutePath("/x"), "/x");
  assert.equal(absolutePath("x"), `${Deno.cwd()}/x`);
  assert.equal(pathExists("/nonexistent/blake3"), false);
  assert.equal(pathExists(Deno.cwd()), true);
  assert.ok(compareVersions("1.10.0", "1.9.2") > 0);
  assert.ok(compareVersions("1.3.1", "1.3.1-2") < 0);
  assert.equal(compareVersions("1.3", "1.3.0"), 0);
});

toolTest("the Debian sources are found and their version read from blake3.h", ["sources"], () => {
  const dir = findBlake3Sources()!;
  assert.match(dir, /^\/usr\/share\/cargo\/registry\/blake3-[\d.]+\/c$/);
  assert.equal(blake3SourceVersion(dir), dir.match(/blake3-([\d.]+)\//)![1]);
});
