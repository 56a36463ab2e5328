import assert from "node:assert/strict";
import { ErrnoError } from "../../../ffi/linux/errno.ts";
import { EADDRINUSE, INADDR_LOOPBACK, readSockaddrIn, sockaddrIn } from "../../../ffi/linux/socket.ts";
import { LoopbackListener, SocketConnection } from "../../../vm/debug/connection.ts";
import { DebuggerConnectionError } from "../../../vm/debug/errors.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

Deno.test("sockaddr_in is encoded in network byte order", () => {
  assert.deepEqual([...sockaddrIn(INADDR_LOOPBACK, 0x1234)], [
    2,
    0,
    0x12,
    0x34,
    127,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  assert.deepEqual(readSockaddrIn(sockaddrIn(0x0a000001, 80)), { address: 0x0a000001, port: 80 });
});

Deno.test("the listener binds 127.0.0.1 only, on the port the kernel picked", () => {
  using listener = LoopbackListener.listen(0);
  assert.ok(listener.port > 0 && listener.port < 65536);
  // /proc/net/tcp lists listening sockets (state 0A) as "local_address:port" in hex, address little-endian.
  const local = Deno.readTextFileSync("/proc/net/tcp").split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((c) =>
      c[3] === "0A" && c[1]?.endsWith(`:${listener.port.toString(16).toUpperCase().padStart(4, "0")}`)
    )
    .map((c) => c[1].split(":")[0]);
  assert.deepEqual(local, ["0100007F"]);
});

Deno.test("accept times out with undefined, then returns a connection that moves bytes both ways", () => {
  using listener = LoopbackListener.listen(0);
  assert.equal(listener.accept(0), undefined);
  assert.equal(listener.accept(20), undefined);
  using client = SocketConnection.connect(listener.port);
  using server = listener.accept(5000)!;
  assert.ok(server instanceof SocketConnection);
  assert.equal(server.readable(0), false);
  client.write(enc("$g#67"));
  assert.equal(server.readable(5000), true);
  const buf = new Uint8Array(64);
  assert.equal(new TextDecoder().decode(buf.subarray(0, server.read(buf))), "$g#67");
  const big = new Uint8Array(1 << 20).fill(0x41); // more than the socket buffers: write must loop
  let got = 0;
  const reader = new Uint8Array(65536);
  // The client reads nothing while the server writes, so write in pieces the buffers can take.
  for (let off = 0; off < big.length; off += 65536) {
    server.write(big.subarray(off, off + 65536));
    while (client.readable(0)) got += client.read(reader);
  }
  while (got < big.length) got += client.read(reader);
  assert.equal(got, big.length);
});

Deno.test("end of stream reads 0; a closed connection refuses use; close is idempotent", () => {
  using listener = LoopbackListener.listen(0);
  const client = SocketConnection.connect(listener.port);
  using server = listener.accept(5000)!;
  client.close();
  client.close();
  assert.equal(client.closed, true);
  assert.throws(() => client.write(enc("x")), DebuggerConnectionError);
  assert.equal(server.readable(5000), true);
  assert.equal(server.read(new Uint8Array(8)), 0);
  // Writing to a peer that is gone fails with a typed error (EPIPE / ECONNRESET), never SIGPIPE.
  assert.throws(() => {
    for (let i = 0; i < 100; i++) server.write(new Uint8Array(65536));
  }, DebuggerConnectionError);
});

Deno.test("a taken port and a refused connection are DebuggerConnectionErrors with the OS error as cause", () => {
  using listener = LoopbackListener.listen(0);
  assert.throws(() => LoopbackListener.listen(listener.port), (e: unknown) => {
    assert.ok(e instanceof DebuggerConnectionError);
    assert.match(e.message, new RegExp(`cannot listen on 127.0.0.1:${listener.port}`));
    assert.ok(e.cause instanceof ErrnoError);
    assert.equal(e.cause.errno, EADDRINUSE);
    return true;
  });
  const port = listener.port;
  listener.close();
  assert.throws(() => listener.accept(0), DebuggerConnectionError);
  assert.throws(() => SocketConnection.connect(port), DebuggerConnectionError);
  assert.throws(() => LoopbackListener.listen(65536), RangeError);
  assert.throws(() => SocketConnection.connect(-1), RangeError);
});

Deno.test("no file descriptor leaks across many sessions", () => {
  const before = openFds();
  for (let i = 0; i < 50; i++) {
    using listener = LoopbackListener.listen(0);
    using client = SocketConnection.connect(listener.port);
    using server = listener.accept(5000)!;
    client.write(enc("+"));
    server.read(new Uint8Array(1));
  }
  assert.equal(openFds(), before);
});
