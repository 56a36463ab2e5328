/// <reference lib="deno.worker" />
/** A Worker for tests/ffi/linux/shared_code_test.ts: posts where it finds the run-thread code. */
import { runThreadEntry } from "../../../ffi/linux/reaper.ts";

self.onmessage = () => {
  self.postMessage(BigInt(Deno.UnsafePointer.value(runThreadEntry("thread"))));
  self.close();
};
