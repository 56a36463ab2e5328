/**
 * A bounded load test of `server.ts`: for each mode it starts the server on 127.0.0.1, sends requests from
 * a fixed number of concurrent connections for a fixed time (or count), stops the server, and prints
 * requests per second and latency percentiles as a Markdown table. Stops by itself.
 *
 * ```sh
 * deno run -A examples/load_test.ts [--seconds 5] [--connections 16] [--modes sync,async,hot,hot-async,worker]
 *   [--pool 4] [--idle-spin-ms 0.2] [--calls 1]   # passed on to the server
 * ```
 *
 * @module
 */

function option(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : fallback;
}

const SECONDS = Number(option("seconds", "5"));
const CONNECTIONS = Number(option("connections", "16"));
const MODES = option("modes", "sync,async,hot,hot-async,worker").split(",");
const SERVER_OPTIONS = ["pool", "idle-spin-ms", "calls"].flatMap((name) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? [`--${name}`, Deno.args[i + 1]] : [];
});
/** Hard bounds, whatever the options say: this never runs away. */
const MAX_REQUESTS = 200_000, MAX_SECONDS = 60;

interface Result {
  mode: string;
  requests: number;
  errors: number;
  perSecond: number;
  p50: number;
  p99: number;
}

/** Starts `server.ts` in `mode` on a free port and waits until it listens. */
async function startServer(mode: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./server.ts", import.meta.url).pathname,
      "--mode",
      mode,
      "--port",
      `${port}`,
      ...SERVER_OPTIONS,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server (${mode}) ended before it listened`);
    seen += value;
  }
  // Keep draining its output so that it never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${port}/?text=hello`,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function percentile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** `CONNECTIONS` loops, each sending one request after the other until time (or the count) runs out. */
async function load(mode: string, url: string): Promise<Result> {
  // Warm-up: the server's JIT, its pool and the connections.
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    for (let i = 0; i < 20; i++) await (await fetch(url)).arrayBuffer();
  }));
  const latencies: number[] = [];
  let errors = 0;
  const seconds = Math.min(SECONDS, MAX_SECONDS);
  const start = performance.now(), end = start + seconds * 1000;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end && latencies.length + errors < MAX_REQUESTS) {
      const t0 = performance.now();
      const res = await fetch(url);
      const body = await res.text();
      if (res.ok && body === "hello\n") latencies.push(performance.now() - t0);
      else errors++;
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    mode,
    requests: latencies.length,
    errors,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

const results: Result[] = [];
for (const mode of MODES) {
  console.error(`load_test: ${mode}: ${SECONDS} s, ${CONNECTIONS} connections`);
  const server = await startServer(mode);
  try {
    results.push(await load(mode, server.url));
  } finally {
    await server.stop();
  }
}

const ms = (v: number) => (v < 1 ? `${(v * 1000).toFixed(0)} µs` : `${v.toFixed(2)} ms`);
console.log(
  `\n${CONNECTIONS} connections, ${SECONDS} s per mode, ${
    SERVER_OPTIONS[SERVER_OPTIONS.indexOf("--calls") + 1] ?? 1
  } Echo call(s) per request, fresh state per request\n`,
);
console.log("| mode | requests/s | p50 | p99 | requests | errors |");
console.log("|---|---|---|---|---|---|");
for (const r of results) {
  console.log(
    `| ${r.mode} | ${r.perSecond.toFixed(0)} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.requests} | ${r.errors} |`,
  );
}
