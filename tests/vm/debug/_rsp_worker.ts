/**
 * Worker half of `_rsp_client.ts`: receives `{ port, steps }`, runs the script, posts the replies.
 *
 * @module
 */
import { runScript, type Step } from "./_rsp_client.ts";

const self = globalThis as unknown as {
  onmessage: (e: MessageEvent<{ port: number; steps: Step[] }>) => void;
  postMessage: (m: unknown) => void;
};

self.onmessage = (e) => {
  try {
    const replies = runScript(
      e.data.port,
      e.data.steps,
      (value) => self.postMessage({ kind: "notify", value }),
    );
    self.postMessage({ kind: "done", replies });
  } catch (err) {
    self.postMessage({ kind: "error", message: String((err as Error)?.stack ?? err) });
  }
};
