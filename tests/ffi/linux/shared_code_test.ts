/**
 * Shared machine code (ffi/linux/shared_code.ts): the run-thread image is mapped once per process, as a
 * sealed memfd named after its SHA-256, and every Worker finds that mapping instead of making its own.
 */
import assert from "node:assert/strict";
import { sharedCode } from "../../../ffi/linux/shared_code.ts";
import { runThreadEntry } from "../../../ffi/linux/reaper.ts";
import { RUN_THREAD_IMAGE } from "../../../vm/kvm/_run_thread_image.ts";

const LINUX = Deno.build.os === "linux";

Deno.test("the image's SHA-256 is that of its bytes", async () => {
  const bytes = Uint8Array.fromBase64(RUN_THREAD_IMAGE.base64);
  const hex = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  assert.equal(RUN_THREAD_IMAGE.sha256, hex);
});

/** The lines of /proc/self/maps that map the run-thread image's memfd. */
function imageMappings(): string[] {
  const name = `/memfd:snapvm-code-${RUN_THREAD_IMAGE.label}-${
    RUN_THREAD_IMAGE.sha256.slice(0, 32)
  } (deleted)`;
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.endsWith(name));
}

Deno.test({
  name: "the run-thread code is one read+execute memfd mapping, the same in every Worker",
  ignore: !LINUX,
  async fn() {
    const here = sharedCode(RUN_THREAD_IMAGE);
    assert.equal(here.shared, true);
    assert.equal(sharedCode(RUN_THREAD_IMAGE), here, "made once per thread");
    const lines = imageMappings();
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0].split(" ")[1], /^r-x/);
    const base = BigInt(Deno.UnsafePointer.value(here.base));
    assert.equal(lines[0].split("-")[0], base.toString(16));
    const bytes = Uint8Array.fromBase64(RUN_THREAD_IMAGE.base64);
    const mapped = new Uint8Array(bytes.length);
    new Deno.UnsafePointerView(here.base).copyInto(mapped);
    assert.deepEqual(mapped, bytes);
    for (let i = 0; i < 3; i++) {
      const w = new Worker(new URL("./_shared_code_worker.ts", import.meta.url), { type: "module" });
      const entry = await new Promise<bigint>((resolve) => {
        w.onmessage = (e) => resolve(e.data);
        w.postMessage("where");
      });
      assert.equal(entry, BigInt(Deno.UnsafePointer.value(runThreadEntry("thread"))));
    }
    assert.equal(imageMappings().length, 1, "no Worker mapped its own");
  },
});
