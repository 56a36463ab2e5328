import assert from "node:assert/strict";
import { UninitializedSandbox } from "../mod.ts";
import { guestPath, kvmTest } from "./_kvm.ts";

function counts() {
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n");
  return {
    fds: [...Deno.readDirSync("/proc/self/fd")].length,
    maps: maps.length,
    // The kvm_run areas of vCPUs and snapshot memfds are ours alone; V8's heap also makes anonymous maps.
    ours: maps.filter((l) => /kvm|memfd|snapvm/.test(l)).length,
  };
}

kvmTest("1,000 sandboxes created, called and closed leave no fds or mappings behind", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  u.evolve().close(); // opens /dev/kvm and the keeper VM, which live for the process
  const before = counts();
  for (let i = 0; i < 1000; i++) {
    using sbx = u.evolve();
    assert.equal(sbx.call("EchoI32", i), i);
  }
  const after = counts();
  assert.equal(after.fds, before.fds, "file descriptors");
  assert.equal(after.ours, before.ours, "KVM and snapshot mappings");
  // 1,000 sandboxes each mapped and unmapped their guest memory; a leak would add 1,000 mappings, while
  // V8's own heap may add a few.
  assert.ok(after.maps <= before.maps + 16, `mappings grew from ${before.maps} to ${after.maps}`);
});

kvmTest("a poisoned sandbox is released by close too", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  u.evolve().close();
  const before = counts();
  for (let i = 0; i < 50; i++) {
    using sbx = u.evolve();
    assert.throws(() => sbx.call("IllegalInstruction"));
  }
  assert.ok(counts().fds <= before.fds, "file descriptors grew");
});
