import assert from "node:assert/strict";
import { decodeKernelImage } from "../../../format/blake3/_kernel_image.ts";
import { KERNEL_X86_64_SYSV } from "../../../format/blake3/_kernel_x86_64_sysv.ts";
import { KERNEL_X86_64_WIN64 } from "../../../format/blake3/_kernel_x86_64_win64.ts";
import {
  buildKernelImage,
  KERNEL_TARGETS,
  kernelModulePath,
  renderKernelModule,
} from "../../../format/blake3/build_kernel.ts";
import { toolTest } from "./_helpers.ts";
import { sameToolchain } from "../../_rebuild.ts";

const committed = { "x86_64-sysv": KERNEL_X86_64_SYSV, "x86_64-win64": KERNEL_X86_64_WIN64 };

Deno.test("the committed images are laid out as the loader expects", () => {
  for (const target of KERNEL_TARGETS) {
    const kernel = committed[target];
    assert.equal(kernel.target, target);
    const image = decodeKernelImage(kernel);
    assert.equal(kernel.codeBytes % 4096, 0);
    assert.equal(kernel.mappedBytes % 4096, 0);
    assert.ok(image.length > kernel.codeBytes && image.length <= kernel.mappedBytes, "data after the code");
    for (const offset of Object.values(kernel.entries)) assert.ok(offset < kernel.codeBytes);
    assert.ok(kernelModulePath(target).endsWith(`_kernel_${target.replace("-", "_")}.ts`));
  }
});

toolTest("rebuilding the kernels from the Debian sources gives the committed modules byte for byte", [
  "gcc",
  "sources",
], async () => {
  for (const target of KERNEL_TARGETS) {
    const kernel = committed[target];
    const rebuilt = await buildKernelImage(target);
    if (!sameToolchain(rebuilt.toolchain, kernel.toolchain, "the kernels")) continue;
    assert.equal(
      renderKernelModule(rebuilt),
      await Deno.readTextFile(kernelModulePath(target)),
      `${target} differs from a rebuild: run deno run -A format/blake3/build_kernel.ts`,
    );
  }
});
