/**
 * Snapshot lifecycles do not leak file descriptors or mappings. The cycles run in a fresh Deno process
 * (tests/_snapshot_leak_child.ts), where no other test's objects are waiting for garbage collection.
 */
import assert from "node:assert/strict";
import { vmTest } from "../../_hypervisor.ts";
import { withTempDir } from "./_util.ts";

const CHILD = new URL("./_leak_child.ts", import.meta.url).pathname;

interface Counts {
  fds: number;
  maps: number;
  vmSizeKiB: number;
  snapshotMappings: Record<string, number>;
}

async function cycles(scenario: "file" | "mixed", n: number): Promise<{ before: Counts; after: Counts }> {
  return await withTempDir(async (dir) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", CHILD, scenario, String(n), dir],
    })
      .output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return JSON.parse(new TextDecoder().decode(out.stdout));
  });
}

function assertNoGrowth({ before, after }: { before: Counts; after: Counts }): void {
  assert.equal(after.fds, before.fds, "file descriptors");
  assert.deepEqual(
    after.snapshotMappings,
    before.snapshotMappings,
    "mappings of snapshot memory and vCPUs, by kind",
  );
  // Guest memory is anonymous (and the kernel may merge neighbouring anonymous mappings), so it is not
  // counted by name: a leaked 2 MiB scratch region per cycle would add 400 MiB of address space, while the
  // JavaScript heap grows by a few dozen 256 KiB pages.
  assert.ok(
    after.vmSizeKiB - before.vmSizeKiB < 100 * 1024,
    `address space grew from ${before.vmSizeKiB} KiB to ${after.vmSizeKiB} KiB`,
  );
  assert.ok(after.maps <= before.maps + 64, `mappings grew from ${before.maps} to ${after.maps}`);
}

vmTest("200 fromFile/fromSnapshot/restore/close cycles leave no fds or mappings behind", async () => {
  assertNoGrowth(await cycles("file", 200));
});

vmTest(
  "200 cycles of in-memory, Initialise, cached and unchecked snapshots leave nothing behind",
  async () => {
    assertNoGrowth(await cycles("mixed", 200));
  },
);
