/// <reference lib="deno.worker" />
// Receives an InterruptHandle, kills the call it guards as soon as one is running, reports the attempts.
import { InterruptHandle } from "../../mod.ts";

self.onmessage = (e: MessageEvent) => {
  const handle = InterruptHandle.from(e.data);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let attempts = 1;
  Atomics.wait(pause, 0, 0, 20);
  while (!handle.kill()) {
    attempts++;
    Atomics.wait(pause, 0, 0, 1);
  }
  self.postMessage(attempts);
};
