/**
 * A scripted gdb remote protocol client for tests that debug a real sandbox. The sandbox serves gdb on the
 * thread that runs the call, which blocks, so the client runs in a Worker (`_rsp_worker.ts`): the test
 * starts it with a script of packets, then makes the sandbox calls, then reads what the stub answered.
 *
 * @module
 */
import { DebuggerConnectionError } from "../../../vm/debug/errors.ts";
import { SocketConnection } from "../../../vm/debug/connection.ts";
import { bytesToLatin1, framePacket, latin1ToBytes, PacketReader } from "../../../vm/debug/packet.ts";
import { LoopbackListener } from "../../../vm/debug/connection.ts";

/** One step of a client script. */
export type Step =
  /** Send a packet and wait for the stub's reply packet (for `c`/`s`: the next stop reply). */
  | { readonly send: string }
  /** Send a packet and do not wait (gdb's `k`, which gets no reply). */
  | { readonly post: string }
  /** Send Ctrl-C (0x03) and wait for the stop reply. */
  | { readonly interrupt: true }
  /** Wait for a packet the stub sends on its own (`W`/`X` when the guest ends). */
  | { readonly wait: true }
  /** Sleep in the worker. */
  | { readonly sleep: number }
  /** Tell the test (the promise of `notified(value)` resolves). */
  | { readonly notify: string }
  /** Close the connection without a word (as if gdb died). */
  | { readonly drop: true };

/** A connected client: packets in, reply packets out, acks handled. */
export class RspClient {
  readonly #conn: SocketConnection;
  readonly #reader = new PacketReader();
  readonly #buf = new Uint8Array(65536);

  private constructor(conn: SocketConnection) {
    this.#conn = conn;
  }

  /** Connects to 127.0.0.1:`port`, retrying while nobody listens yet (up to `timeoutMs`). */
  static connect(port: number, timeoutMs = 20_000): RspClient {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        return new RspClient(SocketConnection.connect(port));
      } catch (e) {
        if (!(e instanceof DebuggerConnectionError) || Date.now() > end) throw e;
        const wait = new Int32Array(new SharedArrayBuffer(4));
        Atomics.wait(wait, 0, 0, 20);
      }
    }
  }

  /** Sends a packet. */
  send(body: string): void {
    this.#conn.write(framePacket(body));
  }

  /** Sends raw bytes. */
  raw(s: string): void {
    this.#conn.write(latin1ToBytes(s));
  }

  /** The next packet from the stub (acked), or `undefined` when the stub closed the connection. */
  next(): string | undefined {
    for (;;) {
      for (let e = this.#reader.next(); e !== undefined; e = this.#reader.next()) {
        if (e.kind !== "packet") continue;
        if (!e.checksumOk) throw new Error(`bad checksum from the stub: ${bytesToLatin1(e.body)}`);
        this.raw("+");
        return bytesToLatin1(e.body);
      }
      const n = this.#conn.read(this.#buf);
      if (n === 0) return undefined;
      this.#reader.push(this.#buf.subarray(0, n));
    }
  }

  /** Closes the connection. */
  close(): void {
    this.#conn.close();
  }
}

/** Runs `steps` on a connection to `port`; returns the replies, one per step that waits (`<closed>` at EOF). */
export function runScript(port: number, steps: readonly Step[], notify: (v: string) => void): string[] {
  const c = RspClient.connect(port);
  const replies: string[] = [];
  try {
    for (const step of steps) {
      if ("send" in step) {
        c.send(step.send);
        replies.push(c.next() ?? "<closed>");
      } else if ("post" in step) c.send(step.post);
      else if ("interrupt" in step) {
        c.raw("\x03");
        replies.push(c.next() ?? "<closed>");
      } else if ("wait" in step) replies.push(c.next() ?? "<closed>");
      else if ("sleep" in step) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, step.sleep);
      else if ("notify" in step) notify(step.notify);
      else if ("drop" in step) break;
    }
  } finally {
    c.close();
  }
  return replies;
}

/** A script running in a Worker. */
export interface ScriptRun {
  /** Resolves when the script reaches `{ notify: value }`. */
  notified(value: string): Promise<void>;
  /** The replies, when the script ended (rejects with the worker's error). */
  readonly done: Promise<string[]>;
}

/** Starts `steps` against 127.0.0.1:`port` in a Worker. */
export function startScript(port: number, steps: readonly Step[]): ScriptRun {
  const worker = new Worker(new URL("./_rsp_worker.ts", import.meta.url), { type: "module" });
  const waiting = new Map<string, () => void>();
  const seen = new Set<string>();
  const done = new Promise<string[]>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent) => {
      const m = e.data as { kind: string; value?: string; replies?: string[]; message?: string };
      if (m.kind === "notify") {
        seen.add(m.value!);
        waiting.get(m.value!)?.();
      } else {
        worker.terminate();
        if (m.kind === "done") resolve(m.replies!);
        else reject(new Error(`RSP client failed: ${m.message}`));
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      reject(new Error(`RSP client worker crashed: ${e.message}`));
    };
  });
  worker.postMessage({ port, steps });
  return {
    notified: (value) =>
      seen.has(value) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(value, resolve)),
    done,
  };
}

/** A port nobody listens on right now (listened on and released). */
export function freePort(): number {
  const l = LoopbackListener.listen(0);
  const port = l.port;
  l.close();
  return port;
}

/** The value of register `regnum` (hex, gdb numbering) in a `T` stop reply, as a bigint. */
export function stopRegister(reply: string, regnum: number): bigint {
  const m = new RegExp(`${regnum.toString(16).padStart(2, "0")}:([0-9a-f]{16});`).exec(reply);
  if (m === null) throw new Error(`no register ${regnum} in ${reply}`);
  return littleEndian(m[1]);
}

/** A little-endian hex string (as in `g`, `p` and stop replies) as a bigint. */
export function littleEndian(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2) v = (v << 8n) | BigInt(parseInt(hex.slice(i, i + 2), 16));
  return v;
}

/** A bigint as `bytes` little-endian bytes of hex (for `P` and `M` packets). */
export function hexLE(value: bigint, bytes: number): string {
  let s = "";
  for (let i = 0; i < bytes; i++) s += Number((value >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, "0");
  return s;
}
