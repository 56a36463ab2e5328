/**
 * Bindings to the BSD socket calls of glibc on x86-64 Linux, for synchronous TCP: the gdb stub serves its
 * debugger from inside a blocking `sandbox.call()`, on the JavaScript thread, so it cannot use Deno's
 * asynchronous sockets. Opened once per process (per Worker) on first use, like {@linkcode libc}.
 *
 * Every constant carries the header it comes from; the values are the x86-64 Linux ones (glibc 2.36,
 * Linux 6.x), where they have never changed.
 *
 * @module
 */
import { lastErrno } from "./errno.ts";

/** The `Deno.dlopen` symbol table: libc's socket calls with their C signatures. */
export const SOCKET_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

/** The opened symbols; see {@linkcode socketLib}. */
export type SocketSymbols = Deno.DynamicLibrary<typeof SOCKET_SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SOCKET_SYMBOLS> | undefined;

/**
 * The socket symbols of glibc, opened on first use. Calls block the calling thread (no `nonblocking`
 * option): that is the point.
 *
 * @example
 * ```ts
 * import { AF_INET, SOCK_CLOEXEC, SOCK_STREAM, socketLib } from "./socket.ts";
 * const fd = socketLib().socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
 * socketLib().close(fd);
 * ```
 */
export function socketLib(): SocketSymbols {
  if (lib === undefined) {
    lib = Deno.dlopen("libc.so.6", SOCKET_SYMBOLS);
    // Set up the errno reader now, so its own first-use work never runs between a failing call and the
    // errno read that follows it.
    lastErrno();
  }
  return lib.symbols;
}

/** `<bits/socket.h>`: the IPv4 address family. */
export const AF_INET = 2;
/** `<bits/socket_type.h>`: stream socket; `SOCK_CLOEXEC` (= `O_CLOEXEC`, 0o2000000) for socket/accept4. */
export const SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
/** `<asm-generic/socket.h>`: `setsockopt` level and option. */
export const SOL_SOCKET = 1, SO_REUSEADDR = 2;
/** `<netinet/in.h>` `IPPROTO_TCP`, `<netinet/tcp.h>` `TCP_NODELAY`. */
export const IPPROTO_TCP = 6, TCP_NODELAY = 1;
/** `<netinet/in.h>`: 127.0.0.1 in host byte order. */
export const INADDR_LOOPBACK = 0x7f000001;
/** `<bits/socket.h>`: `recv`/`send` flags. `MSG_NOSIGNAL` turns SIGPIPE into an EPIPE error. */
export const MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
/** `<sys/socket.h>`: `shutdown` directions. */
export const SHUT_WR = 1, SHUT_RDWR = 2;
/** `<bits/poll.h>`: `pollfd.events` / `revents` bits. */
export const POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
/** `<asm-generic/errno-base.h>` / `<asm-generic/errno.h>` values the socket code branches on. */
export const EINTR = 4, EAGAIN = 11, EPIPE = 32, EADDRINUSE = 98, ECONNRESET = 104;

/** `struct sockaddr_in` (`<netinet/in.h>`): family u16 @0, port u16 big-endian @2, address u32 big-endian @4. */
export const SOCKADDR_IN_SIZE = 16;
/** `struct pollfd` (`<poll.h>`): fd i32 @0, events i16 @4, revents i16 @6. */
export const POLLFD_SIZE = 8;

/**
 * Encodes a `struct sockaddr_in`.
 *
 * @example
 * ```ts
 * import { INADDR_LOOPBACK, sockaddrIn } from "./socket.ts";
 * const sa = sockaddrIn(INADDR_LOOPBACK, 1234);
 * console.log(sa.length); // 16
 * ```
 */
export function sockaddrIn(address: number, port: number): Uint8Array {
  const out = new Uint8Array(SOCKADDR_IN_SIZE);
  const v = new DataView(out.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  v.setUint32(4, address, false);
  return out;
}

/**
 * Decodes the address and port of a `struct sockaddr_in`.
 *
 * @example
 * ```ts
 * import { readSockaddrIn, sockaddrIn } from "./socket.ts";
 * console.log(readSockaddrIn(sockaddrIn(0x7f000001, 80)).port); // 80
 * ```
 */
export function readSockaddrIn(sa: Uint8Array): { address: number; port: number } {
  const v = new DataView(sa.buffer, sa.byteOffset, sa.byteLength);
  return { address: v.getUint32(4, false), port: v.getUint16(2, false) };
}

/**
 * Encodes a one-element `struct pollfd` array; after `poll`, `revents` is `getInt16(6)` of the result.
 *
 * @example
 * ```ts
 * import { POLLIN, pollfd } from "./socket.ts";
 * const p = pollfd(0, POLLIN);
 * console.log(new DataView(p.buffer).getInt16(6, true)); // 0
 * ```
 */
export function pollfd(fd: number, events: number): Uint8Array {
  const out = new Uint8Array(POLLFD_SIZE);
  const v = new DataView(out.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, events, true);
  return out;
}
