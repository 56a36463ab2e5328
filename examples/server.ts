/**
 * A web server that runs an untrusted guest function for every request, each time on fresh state: a pool of
 * sandboxes made from one snapshot, each restored to it after every request (only the pages the guest wrote
 * are copied back).
 *
 * ```sh
 * deno run -A examples/server.ts [--mode sync|async|hot|hot-async|worker] [--port 8000] [--pool 4]
 *   [--idle-spin-ms 0.2] [--calls 1]
 * curl 'http://127.0.0.1:8000/?text=hello'   # the guest's Echo
 * curl 'http://127.0.0.1:8000/count'         # the guest's AddToStatic(1): always 1, the state is fresh
 * ```
 *
 * Modes: `sync` calls with `call()` (each call blocks the event loop), `async` with `callAsync()` (the
 * guest runs on a thread of its own), `hot` and `hot-async` use hot sandboxes (the guest waits in its
 * mailbox, a call costs no VM exit) with `call()` and `callAsync()`. `worker` is the comparison without
 * snapvm: a new Deno Worker per request, the usual way to give each request fresh JavaScript state.
 *
 * Listens on 127.0.0.1 only, and prints `listening on <url>` once it accepts requests.
 *
 * @module
 */
import { HostFunctions, MultiUseSandbox, type Snapshot, UninitializedSandbox } from "../mod.ts";

const MODES = ["sync", "async", "hot", "hot-async", "worker"] as const;
type Mode = typeof MODES[number];

function option(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : fallback;
}

const mode = option("mode", "async") as Mode;
if (!MODES.includes(mode)) throw new RangeError(`--mode must be one of ${MODES.join(", ")}, got ${mode}`);
const port = Number(option("port", "8000"));
const poolSize = Number(option("pool", "4"));
/**
 * A hot guest polls this long after answering. The pool restores each sandbox right after its request,
 * which parks the guest anyway: polling longer would only keep cores busy that the server needs.
 */
const idleSpinMs = Number(option("idle-spin-ms", "0.2"));
/** Guest calls per request (all on the same fresh state): hot sandboxes pay off with more than one. */
const callsPerRequest = Number(option("calls", "1"));

const guest = new URL("../guest/bin/testguest", import.meta.url);
const hostFunctions = new HostFunctions().register(
  "Add",
  { params: ["i32", "i32"], returns: "i32" },
  (a: number, b: number) => a + b,
);
const config = {
  hot: mode === "hot" || mode === "hot-async" ? { idleSpinMs } : false,
  maxExecutionTimeMs: 100,
};

/** Sandboxes waiting for a request, and requests waiting for a sandbox. */
const idle: MultiUseSandbox[] = [];
const waiting: ((s: MultiUseSandbox) => void)[] = [];
let snapshot: Snapshot | undefined;

if (mode !== "worker") {
  // Initialise once, snapshot, and clone: every sandbox of the pool starts from the same state.
  using first = new UninitializedSandbox(guest, config, hostFunctions).evolve();
  snapshot = first.snapshot();
  for (let i = 0; i < poolSize; i++) idle.push(MultiUseSandbox.fromSnapshot(snapshot, hostFunctions, config));
}

function acquire(): Promise<MultiUseSandbox> | MultiUseSandbox {
  return idle.pop() ?? new Promise((resolve) => waiting.push(resolve));
}

/** Back to the snapshot's state (a failed call may have poisoned it: restore clears that too), then reuse. */
function release(sbx: MultiUseSandbox): void {
  sbx.restore(snapshot!);
  const next = waiting.shift();
  if (next) next(sbx);
  else idle.push(sbx);
}

/** Runs a guest function (`calls` times) on a pooled sandbox, as the mode says; returns the last result. */
async function run(calls: number, name: string, ...args: unknown[]): Promise<unknown> {
  const sbx = await acquire();
  try {
    let result;
    for (let i = 0; i < calls; i++) {
      result = mode === "sync" || mode === "hot"
        ? sbx.call(name, ...args)
        : await sbx.callAsync(name, ...args);
    }
    return result;
  } finally {
    // Tens of microseconds (the pages the call wrote are copied back); a timer would cost more.
    release(sbx);
  }
}

/** The comparison: a fresh Worker (fresh JavaScript state) per request. */
function viaWorker(text: string): Promise<string> {
  const worker = new Worker(new URL("./_echo_worker.ts", import.meta.url), { type: "module" });
  return new Promise<string>((resolve, reject) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => reject(e.error ?? new Error(e.message));
    worker.postMessage(text);
  }).finally(() => worker.terminate());
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => console.log(`listening on http://127.0.0.1:${port}/ (mode ${mode})`),
}, async (req) => {
  const url = new URL(req.url);
  try {
    if (url.pathname === "/count") {
      if (mode === "worker") return new Response("1\n");
      return new Response(`${await run(1, "AddToStatic", 1)}\n`);
    }
    const text = url.searchParams.get("text") ?? "hello";
    const out = mode === "worker" ? await viaWorker(text) : await run(callsPerRequest, "Echo", text);
    return new Response(`${out}\n`);
  } catch (e) {
    return new Response(`${(e as Error).name}: ${(e as Error).message}\n`, { status: 500 });
  }
});

Deno.addSignalListener("SIGTERM", async () => {
  await server.shutdown();
  for (const sbx of idle) sbx.close();
  snapshot?.close();
  Deno.exit(0);
});
