/**
 * Test helper: a TCP proxy on 127.0.0.1 in front of a test registry that breaks connections on purpose, when
 * the request bytes it has forwarded (over all connections) reach given totals, to interrupt an upload in
 * the middle of a chunk.
 *
 * Deno's `fetch` sends a request again by itself, once, when a reused connection breaks before the answer;
 * a second cut shortly after the first also breaks that resend, so the failure reaches the caller.
 *
 * @module
 */

/** A running proxy. */
export interface CuttingProxy extends AsyncDisposable {
  /** `127.0.0.1:PORT`, to use as the registry host. */
  host: string;
  /** How many connections were cut so far. */
  readonly cuts: number;
}

/**
 * Starts the proxy. When the client-to-registry bytes forwarded in total would pass the next of `cutAt`
 * (ascending), the connection carrying them is closed on both sides right there. After the last cut,
 * everything passes through untouched.
 */
export function startCuttingProxy(target: string, cutAt: number[]): CuttingProxy {
  const [hostname, port] = target.split(":");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
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
  const pump = async (from: Deno.Conn, to: Deno.Conn, count: boolean) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        let chunk = buffer.subarray(0, n);
        const next = cutAt[cuts];
        if (count && next !== undefined && total + n > next) {
          chunk = chunk.subarray(0, next - total);
          total = next;
          cuts++;
          for (let w = 0; w < chunk.byteLength;) w += await to.write(chunk.subarray(w));
          break;
        }
        if (count) total += n;
        for (let w = 0; w < chunk.byteLength;) w += await to.write(chunk.subarray(w));
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
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of [...open]) close(conn);
      await Promise.all(pumps);
    },
  };
}
