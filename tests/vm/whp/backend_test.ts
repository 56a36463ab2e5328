// What can be checked of the WHP backend without Windows: importing it opens no library, and on another
// OS it refuses with its typed error.
import assert from "node:assert/strict";

Deno.test("importing the Windows modules opens no library", async () => {
  const dlopen = Deno.dlopen;
  let opened = 0;
  (Deno as { dlopen: unknown }).dlopen = () => {
    opened++;
    throw new Error("dlopen at import");
  };
  try {
    await import("../../../vm/whp/backend.ts");
    await import("../../../vm/memory/windows/os_memory.ts");
  } finally {
    (Deno as { dlopen: unknown }).dlopen = dlopen;
  }
  assert.equal(opened, 0);
});

Deno.test({
  name: "createVm() off Windows throws WhpUnavailableError",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const { whpBackend } = await import("../../../vm/whp/backend.ts");
    const { WhpUnavailableError } = await import("../../../vm/whp/errors.ts");
    assert.equal(whpBackend.name, "whp");
    assert.equal(whpBackend.hypervisor, 3);
    assert.throws(
      () => whpBackend.createVm(),
      (e: unknown) =>
        e instanceof WhpUnavailableError && e.code === "not-windows" &&
        e.name === "HypervisorUnavailableError",
    );
    assert.equal(whpBackend.interrupt({ backend: "kvm", tid: 1 }), false);
    whpBackend.shutdownThread();
  },
});
