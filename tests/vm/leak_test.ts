import assert from "node:assert/strict";
import { dropIdleSystemAreas } from "../../vm/machine/system_image.ts";
import { UninitializedSandbox } from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

function counts() {
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n");
  return {
    fds: (dropIdleSystemAreas(), [...Deno.readDirSync("/proc/self/fd")].length),
    maps: maps.length,
    // The kvm_run areas of vCPUs and snapshot memfds are ours alone; V8's heap also makes anonymous maps.
    ours: maps.filter((l) => /kvm|memfd|snapvm/.test(l)).length,
    // Guest memory is at least 2 MiB (the image is linked at 2 MiB); V8's heap grows in 256 KiB pieces.
    big: maps.filter((l) => {
      const [range, , , , inode] = l.split(/\s+/);
      const [lo, hi] = (range ?? "0-0").split("-").map((h) => parseInt(h, 16));
      return inode === "0" && hi - lo >= 2 * 1024 * 1024;
    }).length,
  };
}

vmTest("1,000 sandboxes created, called and closed leave no fds or mappings behind", () => {
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
  // 1,000 sandboxes each mapped and unmapped at least 2 MiB of guest memory: a leak would add 1,000 big
  // anonymous mappings. (Small ones come and go with V8's heap and are not counted.)
  assert.ok(after.big <= before.big + 2, `big anonymous mappings grew from ${before.big} to ${after.big}`);
});

vmTest("a poisoned sandbox is released by close too", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  u.evolve().close();
  const before = counts();
  for (let i = 0; i < 50; i++) {
    using sbx = u.evolve();
    assert.throws(() => sbx.call("IllegalInstruction"));
  }
  assert.ok(counts().fds <= before.fds, "file descriptors grew");
});
