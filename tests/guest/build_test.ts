import assert from "node:assert/strict";
import { buildGuests, haveGcc } from "../../guest/build.ts";

const root = new URL("../../", import.meta.url).pathname;

/** The committed bytes of a file (from git's HEAD, since the build task may have rewritten the tree). */
async function committed(path: string): Promise<Uint8Array> {
  const out = await new Deno.Command("git", {
    args: ["-C", root, "show", `HEAD:${path}`],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  return out.success ? out.stdout : Deno.readFileSync(`${root}${path}`);
}

Deno.test({
  name: "committed guest binaries match a fresh build from source",
  ignore: !(await haveGcc()),
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    try {
      const built = await buildGuests(dir);
      assert.ok(built.length >= 3);
      for (const path of built) {
        const name = path.split("/").pop()!;
        assert.deepEqual(
          Deno.readFileSync(path),
          await committed(`guest/bin/${name}`),
          `guest/bin/${name} is stale`,
        );
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
