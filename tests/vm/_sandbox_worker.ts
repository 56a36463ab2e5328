/**
 * A Worker for tests/vm/worker_test.ts: `{ run: "cycle" }` makes, calls, restores and closes a sandbox,
 * then ends the Worker; `{ run: "spin" }` posts the sandbox's interrupt handle and starts a call that never returns (no
 * time limit), reporting how it ended; `{ run: "spinAsync" }` and `{ run: "hot" }` start an asynchronous
 * call that never returns (the first in an ordinary sandbox, the second in a hot one) and post the kernel
 * id of the thread that runs its vCPU, then leave the event loop free for `terminate()`.
 */
import { UninitializedSandbox } from "../../mod.ts";

const guest = decodeURIComponent(new URL("../../guest/bin/attackguest", import.meta.url).pathname);

self.onmessage = (e: MessageEvent<{ run: "cycle" | "spin" | "spinAsync" | "hot" }>) => {
  if (e.data.run === "cycle") {
    {
      using sbx = new UninitializedSandbox(guest).evolve();
      using snap = sbx.snapshot();
      sbx.call("Counter");
      sbx.restore(snap); // loads the native restore library in this Worker
      sbx.call("Counter");
    }
    self.postMessage("done");
    self.close();
    return;
  }
  if (e.data.run === "spinAsync" || e.data.run === "hot") {
    // Never closed: the Worker is terminated with the call in flight.
    const sbx = new UninitializedSandbox(guest, { maxExecutionTimeMs: 0, hot: e.data.run === "hot" })
      .evolve();
    sbx.callAsync("Spin").catch(() => {});
    self.postMessage({ tid: new Int32Array(sbx.interruptHandle().shared)[3] });
    return;
  }
  using sbx = new UninitializedSandbox(guest, { maxExecutionTimeMs: 0 }).evolve();
  const h = sbx.interruptHandle();
  self.postMessage({ shared: h.shared, target: h.target });
  try {
    sbx.call("Spin");
  } catch (err) {
    self.postMessage((err as Error).name);
  }
};
