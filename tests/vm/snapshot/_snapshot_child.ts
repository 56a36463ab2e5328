/**
 * A second Deno process for tests/snapshot_file_test.ts.
 *
 *   deno run -A tests/_snapshot_child.ts write <path> <value> [heapSize]
 *       Evolves the test guest, adds <value> to its static, saves a snapshot to <path>, prints "written".
 *   deno run -A tests/_snapshot_child.ts read <path>
 *       Loads <path> with fromFile, makes a sandbox from it and prints what it sees as JSON.
 *   deno run -A tests/_snapshot_child.ts writeloop <path> <value> <heapSize>
 *       Like write, with init writing every heap page (so the file has no holes and grows as it is
 *       written), then saves the same snapshot to <path> again and again until killed.
 *
 * @module
 */
import { MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { hostFns, testguest } from "./_util.ts";

const [mode, path, value, heap] = Deno.args;

if (mode === "write" || mode === "writeloop") {
  const heapSize = heap === undefined ? undefined : Number(heap);
  using sbx = testguest({ heapSize, guestInitArg: mode === "writeloop" ? 1n : 0n }).evolve();
  sbx.call("AddToStatic", Number(value));
  using snap = sbx.snapshot();
  await snap.toFile(path);
  console.log("written");
  while (mode === "writeloop") await snap.toFile(path);
} else if (mode === "read") {
  using snap = Snapshot.fromFile(path);
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  const result = {
    entrypoint: snap.entrypoint,
    static: sbx.call("GetStatic"),
    add: sbx.call("Add", 2, 3),
    echo: sbx.call("Echo", "from the child"),
    headerHash: Snapshot.inspectFile(path).headerHash,
  };
  sbx.call("AddToStatic", 1000); // writes in this process never reach the file
  sbx.restore(snap);
  console.log(JSON.stringify({ ...result, afterRestore: sbx.call("GetStatic") }));
} else {
  console.error(`unknown mode ${mode}`);
  Deno.exit(2);
}
