import assert from "node:assert/strict";
import {
  buildFlatImage,
  entryOffsets,
  FLAT_IMAGE_C_FLAGS,
  ImageBuildError,
  imageFieldLines,
  updateGeneratedFile,
} from "../../_tools/flat_image.ts";
import { runTool } from "../../_tools/run_tool.ts";

async function haveGcc(): Promise<boolean> {
  try {
    await runTool("gcc", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

/** Registers a test that needs gcc: it skips with one loud line without it, and fails in CI. */
function gccTest(name: string, fn: () => Promise<void>): void {
  Deno.test(name, async () => {
    if (!(await haveGcc())) {
      if (Deno.env.get("CI") === "true") throw new Error("gcc is missing");
      console.error(`!!! gcc not found: SKIPPING "${name}" !!!`);
      return;
    }
    await fn();
  });
}

/** Builds one C source with the given extra flags. */
function build(source: string, writableData: boolean, flags: readonly string[] = FLAT_IMAGE_C_FLAGS) {
  return buildFlatImage({
    label: "test image",
    writableData,
    compile: async (work) => {
      await Deno.writeTextFile(`${work}/test.c`, source);
      await runTool("gcc", [
        "-c",
        "-O2",
        ...flags,
        "-o",
        `${work}/test.o`,
        `${work}/test.c`,
      ]);
      return [`${work}/test.o`];
    },
  });
}

const CODE = `
static const char greeting[] = "hello";
static long counter;
const char *test_greeting(void) { return greeting; }
long test_count(void) { return ++counter; }
`;

gccTest(
  "a position-independent C file links into a flat image with its entry points in the code",
  async () => {
    const built = await build(CODE, true);
    assert.equal(built.codeBytes, 4096);
    assert.equal(built.mappedBytes, 8192, "the .bss counter gets the second page");
    // `.bss` shares the `.data` output section, so the blob holds its zeroes.
    assert.equal(built.image.length, built.codeBytes + 8, "the counter follows the code");
    const entries = entryOffsets(built, { greeting: "test_greeting", count: "test_count" });
    assert.ok(entries.greeting < built.codeBytes && entries.count < built.codeBytes);
    assert.ok(new TextDecoder().decode(built.image).includes("hello"));
    assert.match(built.toolchain, /^gcc .*; GNU ld /);
    assert.throws(() => entryOffsets(built, { missing: "no_such_symbol" }), ImageBuildError);
  },
);

gccTest("writable data is rejected where the image must have none", async () => {
  await assert.rejects(build(CODE, false), /the image must not have writable data/);
  const built = await build("int test_one(void) { return 1; }\n", false);
  assert.equal(built.codeBytes, built.mappedBytes);
});

gccTest("code with an absolute address is rejected: the blob changes with its link address", async () => {
  await assert.rejects(
    build(CODE, true, [...FLAT_IMAGE_C_FLAGS, "-fno-pic"]),
    (error) => error instanceof ImageBuildError && /not position independent/.test(error.message),
  );
});

Deno.test("imageFieldLines gives hex entries and the bytes in base64 chunks of 100 characters", () => {
  const image = Uint8Array.from({ length: 100_000 }, (_, i) => i * 7);
  const lines = imageFieldLines({ run: 0x1234, stop: 0 }, image);
  assert.deepEqual(lines.slice(0, 5), [
    "  entries: {",
    "    run: 0x1234,",
    "    stop: 0x0,",
    "  },",
    "  base64: [",
  ]);
  assert.equal(lines.at(-1), '  ].join(""),');
  const chunks = lines.slice(5, -1);
  assert.equal(chunks.length, Math.ceil(Math.ceil(image.length / 3) * 4 / 100));
  assert.ok(chunks.every((line) => /^ {4}"[A-Za-z0-9+/=]{1,100}",$/.test(line)));
  const decoded = atob(chunks.map((line) => line.slice(5, -2)).join(""));
  assert.deepEqual(Uint8Array.from(decoded, (c) => c.charCodeAt(0)), image);
});

Deno.test("updateGeneratedFile compares, and writes only when asked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/generated.ts`;
    assert.equal(await updateGeneratedFile(path, "a", false), false);
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    assert.equal(await updateGeneratedFile(path, "a", true), false);
    assert.equal(await Deno.readTextFile(path), "a");
    assert.equal(await updateGeneratedFile(path, "a", true), true);
    assert.equal(await updateGeneratedFile(path, "b", false), false);
    assert.equal(await Deno.readTextFile(path), "a");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
