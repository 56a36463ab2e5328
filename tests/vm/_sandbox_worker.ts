/**
 * A Worker for tests/vm/worker_test.ts: `{ run: "cycle" }` makes, calls and closes a sandbox, then ends the
 * Worker; `{ run: "spin" }` posts the sandbox's interrupt handle and starts a call that never returns (no
 * time limit), reporting how it ended.
 */
import { UninitializedSandbox } from "../../mod.ts";

const guest = decodeURIComponent(new URL("../../guest/bin/attackguest", import.meta.url).pathname);

self.onmessage = (e: MessageEvent<{ run: "cycle" | "spin" }>) => {
  if (e.data.run === "cycle") {
    {
      using sbx = new UninitializedSandbox(guest).evolve();
      sbx.call("Counter");
    }
    self.postMessage("done");
    self.close();
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
