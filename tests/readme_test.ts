/**
 * The README's examples run as a user would run them: every ```ts block (except those marked `ignore`) is
 * pasted into a file in an empty folder whose `deno.json` maps `@snapvm/snapvm` to the published file set
 * served over HTTP (what `deno add jsr:@snapvm/snapvm` does with JSR), and run in order, in that folder.
 *
 * Needs KVM and gcc (skipped loudly without them, failing in CI).
 */
import assert from "node:assert/strict";
import { needsTest, ROOT } from "./cli/_cli.ts";
import { deno, servePackage } from "./consumer/_package.ts";

/** The README's TypeScript blocks that are meant to run, with the line each starts on. */
export function runnableBlocks(markdown: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(ts|typescript)(\s.*)?$/.exec(lines[i]);
    if (open === null) continue;
    const start = i + 1;
    while (i + 1 < lines.length && lines[i + 1] !== "```") i++;
    if (!/\bignore\b/.test(open[2] ?? "")) {
      blocks.push({ line: start, code: lines.slice(start, i + 1).join("\n") + "\n" });
    }
    i++;
  }
  return blocks;
}

Deno.test("runnableBlocks finds ts blocks and leaves out ignored ones", () => {
  const md = "a\n```ts\nconsole.log(1);\n```\n```ts ignore\nx\n```\n```sh\nls\n```\n```ts\n2;\n```\n";
  assert.deepEqual(runnableBlocks(md), [{ line: 2, code: "console.log(1);\n" }, {
    line: 11,
    code: "2;\n",
  }]);
});

needsTest(["kvm", "gcc"], "README: every TypeScript example runs in an empty folder", async () => {
  const blocks = runnableBlocks(await Deno.readTextFile(`${ROOT}README.md`));
  assert.ok(blocks.length >= 3, "the README has runnable examples");
  await using pkg = await servePackage();
  const exports: Record<string, string> = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).exports;
  const imports = Object.fromEntries(
    Object.entries(exports).map((
      [sub, file],
    ) => [`@snapvm/snapvm${sub.slice(1)}`, `${pkg.base}/${file.slice(2)}`]),
  );
  const dir = `${pkg.tmp}/work`;
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ imports }, null, 2));
  const env = { TMPDIR: `${pkg.tmp}/scratch`, NO_COLOR: "1" };
  for (const [i, block] of blocks.entries()) {
    const file = `example${i + 1}.ts`;
    await Deno.writeTextFile(`${dir}/${file}`, block.code);
    const r = await deno(["run", "-A", file], dir, env);
    assert.equal(r.code, 0, `README.md:${block.line}: the example failed (exit ${r.code}):\n${r.stderr}`);
  }
  assert.deepEqual([...pkg.refused], []);
});
