/// <reference lib="deno.worker" />
/**
 * The Worker of `server.ts --mode worker`: answers one message with the same text (what the guest's Echo
 * does), in a fresh isolate per request.
 *
 * @module
 */
self.onmessage = (e: MessageEvent<string>) => self.postMessage(e.data);
