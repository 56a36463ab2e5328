/**
 * The Windows kernel image cannot be run through Deno here (Deno's FFI uses the host's calling convention), so
 * a small C harness calls its entry points through `ms_abi` function pointers: the same machine code, the
 * same convention as on Windows, on this CPU. Only the `VirtualAlloc`/`CreateThread` glue is left to Windows.
 */
import assert from "node:assert/strict";
import { decodeKernelImage } from "../../../format/blake3/_kernel_image.ts";
import { KERNEL_X86_64_WIN64 } from "../../../format/blake3/_kernel_x86_64_win64.ts";
import { b3sum, BOUNDARY_LENGTHS, OFFICIAL_VECTORS, pattern, pseudoRandom, toolTest } from "./_helpers.ts";

const harnessSource = new URL("./_win64_harness.c", import.meta.url).pathname;

async function withHarness(
  fn: (run: (input: Uint8Array, threads: number, leaf: number) => Promise<string[]>) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-blake3-win64-" });
  try {
    const harness = `${dir}/harness`;
    const compiled = await new Deno.Command("gcc", {
      args: ["-O2", "-pthread", "-o", harness, harnessSource],
      stderr: "piped",
    }).output();
    assert.ok(compiled.success, new TextDecoder().decode(compiled.stderr));
    const image = `${dir}/image.bin`;
    await Deno.writeFile(image, decodeKernelImage(KERNEL_X86_64_WIN64));
    const { codeBytes, mappedBytes, entries } = KERNEL_X86_64_WIN64;
    let n = 0;
    await fn(async (input, threads, leaf) => {
      const inputPath = `${dir}/input-${n++}.bin`;
      await Deno.writeFile(inputPath, input);
      const args = [
        image,
        codeBytes,
        mappedBytes,
        entries.hash,
        entries.work,
        entries.root,
        inputPath,
        threads,
        leaf,
      ];
      const output = await new Deno.Command(harness, {
        args: args.map(String),
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      assert.ok(output.success, new TextDecoder().decode(output.stderr));
      await Deno.remove(inputPath);
      return new TextDecoder().decode(output.stdout).trim().split("\n");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

toolTest(
  "the Win64 image gives the official digests through the Microsoft x64 convention",
  ["gcc"],
  async () => {
    await withHarness(async (run) => {
      for (const [length, expected] of OFFICIAL_VECTORS) {
        if (length <= 1024) {
          assert.deepEqual((await run(pattern(length), 1, 1024))[0], expected, `${length} bytes`);
          continue;
        }
        assert.deepEqual(await run(pattern(length), 3, 1024), [expected, expected], `${length} bytes`);
      }
    });
  },
);

toolTest(
  "the Win64 image agrees with b3sum at tree boundaries, on one and several threads",
  ["gcc", "b3sum"],
  async () => {
    await withHarness(async (run) => {
      for (const length of BOUNDARY_LENGTHS.filter((length) => length > 2048)) {
        const data = pseudoRandom(length, length * 3);
        const expected = await b3sum(data);
        for (const leaf of [1024, 64 << 10]) {
          if (leaf >= length) continue;
          assert.deepEqual(
            await run(data, 2, leaf),
            [expected, expected],
            `${length} bytes, ${leaf}-byte leaves`,
          );
        }
      }
    });
  },
);
