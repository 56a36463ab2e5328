/**
 * A Worker for the reaper tests of tests/vm/worker_test.ts. Each run posts what this thread's reaper tracks
 * (`trackedResources()`, with bigints as strings) once it is set up, then:
 *
 * - `keep`: evolves a sandbox, calls it, keeps it open (the parent terminates the Worker);
 * - `close`: keeps two sandboxes, a snapshot loaded from `path` with a sandbox made from it, and a hot sandbox
 *   after an asynchronous call, then ends itself with `self.close()`;
 * - `spin`: posts a sandbox's interrupt handle, then makes a synchronous call that never returns (no time
 *   limit), and posts the name of the error that ends it;
 * - `debug`: keeps a sandbox listening for gdb (`gdbPort: 0`) and a connected pair of loopback sockets;
 * - `clean`: makes and closes all of the above, then posts what is still tracked and ends itself.
 */
import { MultiUseSandbox, Snapshot, UninitializedSandbox } from "../../mod.ts";
import { trackedResources } from "../../ffi/linux/reaper.ts";
import { LoopbackListener, SocketConnection } from "../../vm/debug/connection.ts";
import { dropIdleSystemAreas } from "../../vm/machine/system_image.ts";

const bin = (name: string) =>
  decodeURIComponent(new URL(`../../guest/bin/${name}`, import.meta.url).pathname);
const kept: unknown[] = [];

/** What the reaper tracks, with each mapping's permissions as /proc/self/maps has them now. */
function tracked() {
  const t = trackedResources();
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l !== "").map((l) => {
    const [range, perms] = l.split(" ");
    const [lo, hi] = range.split("-").map((h) => BigInt(`0x${h}`));
    return { lo, hi, perms };
  });
  const perms = (address: bigint) => maps.find((m) => m.lo <= address && address < m.hi)?.perms ?? "";
  return {
    fds: t.fds,
    mappings: t.mappings.map((m) => ({
      address: m.address.toString(),
      size: m.size,
      perms: perms(m.address),
    })),
    timers: t.timers.map(String),
    runThreads: t.runThreads.map(String),
  };
}

function sockets(): void {
  const listener = LoopbackListener.listen(0);
  const client = SocketConnection.connect(listener.port);
  const server = listener.accept(1000)!;
  kept.push(listener, client, server);
}

self.onmessage = async (e: MessageEvent<{ run: string; path?: string }>) => {
  const { run, path } = e.data;
  if (run === "keep") {
    const sbx = new UninitializedSandbox(bin("testguest")).evolve();
    sbx.call("Echo", "x");
    kept.push(sbx);
    self.postMessage({ tracked: tracked() });
    return;
  }
  if (run === "close") {
    for (let i = 0; i < 2; i++) {
      const sbx = new UninitializedSandbox(bin("testguest")).evolve();
      sbx.call("Echo", "x");
      kept.push(sbx);
    }
    const snap = Snapshot.fromFile(path!);
    const fromSnap = MultiUseSandbox.fromSnapshot(snap);
    fromSnap.call("Echo", "x");
    const hot = new UninitializedSandbox(bin("testguest"), { hot: true }).evolve();
    await hot.callAsync("Echo", "x");
    kept.push(snap, fromSnap, hot);
    self.postMessage({ tracked: tracked() });
    self.close();
    return;
  }
  if (run === "spin") {
    const sbx = new UninitializedSandbox(bin("attackguest"), { maxExecutionTimeMs: 0 }).evolve();
    kept.push(sbx);
    const h = sbx.interruptHandle();
    self.postMessage({ tracked: tracked(), shared: h.shared, target: h.target });
    try {
      sbx.call("Spin");
    } catch (err) {
      self.postMessage({ error: (err as Error).name });
    }
    return;
  }
  if (run === "debug") {
    const snap = new UninitializedSandbox(bin("testguest")).evolve().snapshot();
    // From a snapshot: the sandbox listens at once and waits for gdb only at its first call.
    kept.push(snap, MultiUseSandbox.fromSnapshot(snap, undefined, { gdbPort: 0 }));
    sockets();
    self.postMessage({ tracked: tracked() });
    return;
  }
  if (run === "clean") {
    {
      using sbx = new UninitializedSandbox(bin("testguest")).evolve();
      sbx.call("Echo", "x");
      await sbx.callAsync("Echo", "x");
      using snap = sbx.snapshot();
      await snap.toFile(`${path!}.clean`);
      using loaded = Snapshot.fromFile(`${path!}.clean`);
      using fromSnap = MultiUseSandbox.fromSnapshot(loaded, undefined, { gdbPort: 0 });
      using hot = new UninitializedSandbox(bin("testguest"), { hot: true }).evolve();
      await hot.callAsync("Echo", "x");
      hot.call("Echo", "x");
      void fromSnap;
      sockets();
      for (const k of kept.splice(0)) (k as { close(): void }).close();
    }
    await Deno.remove(`${path!}.clean`);
    dropIdleSystemAreas();
    self.postMessage({ tracked: tracked() });
    self.close();
  }
};
