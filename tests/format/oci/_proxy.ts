/**
 * Test helper: a TCP proxy on 127.0.0.1 in front of a test registry that breaks connections on purpose, to
 * interrupt uploads, and counts the requests passing through by method and the request bytes it forwards
 * (with no cut planned, it is a counting proxy: what a client really sends, independent of its own counts).
 *
 * Two ways to cut:
 * - `cutAtBytes`: when the request bytes forwarded (over all connections) reach each given total, in the
 *   middle of whatever is being sent, usually a chunk's body;
 * - `cutPatches`: at the start of the n-th `PATCH` request (1-based), before any of it is forwarded.
 *
 * Deno's `fetch` sends a request again by itself, once, when a reused connection breaks before the answer;
 * cutting that resend too makes the failure reach the caller.
 *
 * @module
 */

/** Where to cut. */
export interface CutPlan {
  /** Totals of forwarded request bytes at which to cut, ascending. */
  cutAtBytes?: number[];
  /** 1-based indexes of `PATCH` requests to cut before their first byte. */
  cutPatches?: number[];
}

/** A running proxy. */
export interface CuttingProxy extends AsyncDisposable {
  /** `127.0.0.1:PORT`, to use as the registry host. */
  host: string;
  /** How many connections were cut so far. */
  readonly cuts: number;
  /** Requests seen, by method (counted when a read from the client starts with `METHOD `). */
  readonly requests: Readonly<Record<string, number>>;
  /** Request bytes forwarded to the registry so far (headers and bodies, over all connections). */
  readonly bytes: number;
}

const METHOD = /^(GET|HEAD|POST|PUT|PATCH|DELETE) /;

/** Starts the proxy in front of `target` (`host:port`). */
export function startCuttingProxy(target: string, plan: CutPlan): CuttingProxy {
  const [hostname, port] = target.split(":");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
  const byteCuts = [...(plan.cutAtBytes ?? [])];
  const requests: Record<string, number> = {};
  let cuts = 0;
  let total = 0;

  const close = (conn: Deno.Conn) => {
    if (open.delete(conn)) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };
  const writeAll = async (to: Deno.Conn, chunk: Uint8Array) => {
    for (let w = 0; w < chunk.byteLength;) w += await to.write(chunk.subarray(w));
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn, upstream: boolean) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.subarray(0, n);
        if (upstream) {
          // Between requests, a client waits for the answer, so a new request starts a fresh read.
          const method = METHOD.exec(new TextDecoder().decode(chunk.subarray(0, 8)))?.[1];
          if (method !== undefined) {
            requests[method] = (requests[method] ?? 0) + 1;
            if (method === "PATCH" && plan.cutPatches?.includes(requests[method])) {
              cuts++;
              break;
            }
          }
          const next = byteCuts[0];
          if (next !== undefined && total + n > next) {
            await writeAll(to, chunk.subarray(0, next - total));
            total = next;
            byteCuts.shift();
            cuts++;
            break;
          }
          total += n;
        }
        await writeAll(to, chunk);
      }
    } catch {
      // the other side closed
    } finally {
      close(from);
      close(to);
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect({ hostname, port: Number(port) });
      } catch {
        client.close();
        continue;
      }
      open.add(client);
      open.add(upstream);
      pumps.push(pump(client, upstream, true), pump(upstream, client, false));
    }
  })();

  return {
    host: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get cuts() {
      return cuts;
    },
    requests,
    get bytes() {
      return total;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of [...open]) close(conn);
      await Promise.all(pumps);
    },
  };
}
