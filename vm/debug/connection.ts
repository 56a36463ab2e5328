/**
 * Blocking TCP on 127.0.0.1 for the gdb stub. A sandbox call is synchronous, and the stub answers gdb in
 * the middle of one, on the JavaScript thread; Deno's sockets are asynchronous and would need the event
 * loop, which is not running then. So these call libc's `accept`/`recv`/`send`/`poll` directly and block.
 *
 * The listener binds the loopback address only: the stub gives whoever connects full control over the
 * guest, so it must never be reachable from another machine.
 *
 * @module
 */
import { ErrnoError, lastErrno } from "../../ffi/linux/errno.ts";
import {
  AF_INET,
  EAGAIN,
  ECONNRESET,
  EINTR,
  INADDR_LOOPBACK,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  pollfd,
  POLLIN,
  readSockaddrIn,
  SHUT_WR,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOCKADDR_IN_SIZE,
  sockaddrIn,
  socketLib,
  SOL_SOCKET,
  TCP_NODELAY,
} from "../../ffi/linux/socket.ts";
import { trackFd, untrackFd } from "../../ffi/linux/reaper.ts";
import { DebuggerConnectionError } from "./errors.ts";

/**
 * A byte stream the stub talks over. {@linkcode SocketConnection} is the TCP one.
 */
export interface Connection {
  /** Blocks until at least one byte arrives; returns how many were read, 0 when the peer closed. */
  read(into: Uint8Array): number;
  /** Whether a `read` would return at once (data or end of stream), waiting at most `timeoutMs`. */
  readable(timeoutMs: number): boolean;
  /** Writes all of `data`, blocking as needed. */
  write(data: Uint8Array): void;
  /** Closes the stream; later calls fail. */
  close(): void;
}

/**
 * Closes fds whose owner was garbage-collected without `close()`. (In a Worker that ends first, no finalizer
 * runs: the Worker's reaper closes them, see `ffi/linux/reaper.ts`.)
 */
const fdRegistry = new FinalizationRegistry<number>((fd) => {
  untrackFd(fd);
  socketLib().close(fd);
});

/** A thrown {@linkcode ErrnoError} for the call that just failed. */
function osError(call: string): ErrnoError {
  return new ErrnoError(call, lastErrno());
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`TCP port is ${port}, expected an integer from 0 to 65535`);
  }
}

/** Waits for `events` on `fd`; true if they arrived within `timeoutMs` (negative: forever). */
function waitFor(fd: number, events: number, timeoutMs: number): boolean {
  const p = pollfd(fd, events);
  const deadline = timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
  for (;;) {
    const left = deadline === Infinity ? -1 : Math.max(0, deadline - Date.now());
    const n = socketLib().poll(p, 1n, left);
    if (n >= 0) return n > 0;
    if (lastErrno() !== EINTR) throw osError("poll");
    // EINTR: a signal arrived (e.g. the sandbox's time-limit timer); wait for the rest of the time.
  }
}

/**
 * One connected TCP socket, blocking. Owns its fd: `close()` (or `using`) releases it; a connection that
 * is garbage-collected unclosed is closed by a finalizer.
 *
 * @example
 * ```ts
 * import { LoopbackListener, SocketConnection } from "./connection.ts";
 * using listener = LoopbackListener.listen(0);
 * using client = SocketConnection.connect(listener.port);
 * using server = listener.accept(1000)!;
 * client.write(new TextEncoder().encode("+"));
 * const buf = new Uint8Array(8);
 * console.log(server.read(buf)); // 1
 * ```
 */
export class SocketConnection implements Connection {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
    fdRegistry.register(this, fd, this);
    // gdb sends small packets and waits for each answer: Nagle's algorithm would add delayed-ACK stalls.
    const one = new Int32Array([1]);
    socketLib().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, new Uint8Array(one.buffer), 4);
  }

  /** Wraps an fd this object now owns (from `accept`). */
  static adopt(fd: number): SocketConnection {
    return new SocketConnection(fd);
  }

  /**
   * Connects to 127.0.0.1:`port` (a client, for tools and tests).
   *
   * @example
   * ```ts
   * import { LoopbackListener, SocketConnection } from "./connection.ts";
   * using listener = LoopbackListener.listen(0);
   * using c = SocketConnection.connect(listener.port);
   * ```
   */
  static connect(port: number): SocketConnection {
    checkPort(port);
    const lib = socketLib();
    const fd = lib.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw osError("socket");
    trackFd(fd);
    for (;;) {
      if (lib.connect(fd, sockaddrIn(INADDR_LOOPBACK, port), SOCKADDR_IN_SIZE) === 0) break;
      const errno = lastErrno();
      if (errno === EINTR) continue;
      untrackFd(fd);
      lib.close(fd);
      throw new DebuggerConnectionError(`cannot connect to 127.0.0.1:${port}`, {
        cause: new ErrnoError("connect", errno),
      });
    }
    return new SocketConnection(fd);
  }

  #open(): number {
    if (this.#fd < 0) throw new DebuggerConnectionError("the connection is closed");
    return this.#fd;
  }

  /** Blocks until bytes arrive; 0 when the peer closed the connection (or reset it). */
  read(into: Uint8Array): number {
    const fd = this.#open();
    for (;;) {
      const n = Number(socketLib().recv(fd, into, BigInt(into.length), 0));
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (errno === ECONNRESET) return 0;
      throw new DebuggerConnectionError("cannot read from the debugger", {
        cause: new ErrnoError("recv", errno),
      });
    }
  }

  /** Whether a `read` would not block, waiting at most `timeoutMs` (0: just look; negative: forever). */
  readable(timeoutMs: number): boolean {
    return waitFor(this.#open(), POLLIN, timeoutMs);
  }

  /** Sends all of `data` (no SIGPIPE: a closed peer is an error). */
  write(data: Uint8Array): void {
    const fd = this.#open();
    let off = 0;
    while (off < data.length) {
      const rest = data.subarray(off);
      const n = Number(socketLib().send(fd, rest, BigInt(rest.length), MSG_NOSIGNAL));
      if (n >= 0) {
        off += n;
        continue;
      }
      const errno = lastErrno();
      if (errno === EINTR) continue;
      throw new DebuggerConnectionError("cannot write to the debugger", {
        cause: new ErrnoError("send", errno),
      });
    }
  }

  /** Ends the sending direction; the peer reads end-of-stream after what was sent. */
  shutdownWrite(): void {
    socketLib().shutdown(this.#open(), SHUT_WR);
  }

  /** Whether {@linkcode close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the socket. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    fdRegistry.unregister(this);
    untrackFd(this.#fd);
    socketLib().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A TCP listener on 127.0.0.1 (never another address). Port 0 picks a free port; {@linkcode port} says
 * which.
 *
 * @example
 * ```ts
 * import { LoopbackListener } from "./connection.ts";
 * using listener = LoopbackListener.listen(0);
 * console.log(listener.port > 0); // true
 * console.log(listener.accept(0)); // undefined: nobody is connecting
 * ```
 */
export class LoopbackListener {
  #fd: number;
  /** The port it listens on. */
  readonly port: number;

  private constructor(fd: number, port: number) {
    this.#fd = fd;
    this.port = port;
    fdRegistry.register(this, fd, this);
  }

  /**
   * Listens on 127.0.0.1:`port`. `SO_REUSEADDR` is set, so a port can be listened on again right after
   * a previous debugging session ended.
   *
   * @throws {DebuggerConnectionError} when the port is taken (the cause is the `bind` error).
   */
  static listen(port: number, backlog = 1): LoopbackListener {
    checkPort(port);
    const lib = socketLib();
    const fd = lib.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw osError("socket");
    trackFd(fd);
    try {
      const one = new Int32Array([1]);
      if (lib.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, new Uint8Array(one.buffer), 4) < 0) {
        throw osError("setsockopt(SO_REUSEADDR)");
      }
      if (lib.bind(fd, sockaddrIn(INADDR_LOOPBACK, port), SOCKADDR_IN_SIZE) < 0) {
        throw new DebuggerConnectionError(`cannot listen on 127.0.0.1:${port}`, { cause: osError("bind") });
      }
      if (lib.listen(fd, backlog) < 0) throw osError("listen");
      const sa = new Uint8Array(SOCKADDR_IN_SIZE);
      const len = new Uint32Array([SOCKADDR_IN_SIZE]);
      if (lib.getsockname(fd, sa, new Uint8Array(len.buffer)) < 0) throw osError("getsockname");
      return new LoopbackListener(fd, readSockaddrIn(sa).port);
    } catch (e) {
      untrackFd(fd);
      lib.close(fd);
      throw e;
    }
  }

  /**
   * Accepts one connection, waiting at most `timeoutMs` (negative: forever; 0: only one already
   * waiting). Returns `undefined` on timeout.
   */
  accept(timeoutMs = -1): SocketConnection | undefined {
    if (this.#fd < 0) throw new DebuggerConnectionError("the listener is closed");
    if (!waitFor(this.#fd, POLLIN, timeoutMs)) return undefined;
    for (;;) {
      const fd = socketLib().accept4(this.#fd, null, null, SOCK_CLOEXEC);
      if (fd >= 0) return SocketConnection.adopt(trackFd(fd));
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return undefined;
      throw new DebuggerConnectionError("cannot accept a debugger", {
        cause: new ErrnoError("accept4", errno),
      });
    }
  }

  /** Stops listening. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    fdRegistry.unregister(this);
    untrackFd(this.#fd);
    socketLib().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
