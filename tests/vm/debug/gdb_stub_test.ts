/**
 * The gdb stub over real TCP sockets: first scripted packet exchanges (a client socket in this thread
 * writes the requests, the stub serves them synchronously, the test reads the replies), then sessions with
 * the real gdb driving the stub against testguest laid out in memory. The test plays the run loop: where
 * a vCPU would run, it reports the stop the guest would have produced.
 *
 * @module
 */
import assert from "node:assert/strict";
import { LoopbackListener, SocketConnection } from "../../../vm/debug/connection.ts";
import { GuestAddressError } from "../../../vm/debug/errors.ts";
import { GdbStub } from "../../../vm/debug/gdb_stub.ts";
import {
  bytesToLatin1,
  escapeBinary,
  framePacket,
  latin1ToBytes,
  PacketReader,
  toHex,
  unescapeBinary,
} from "../../../vm/debug/packet.ts";
import { RFLAGS_TF } from "../../../vm/debug/registers.ts";
import type { ExitStatus, ResumeAction, StopReason } from "../../../vm/debug/target.ts";
import { TARGET_XML } from "../../../vm/debug/target_description.ts";
import { gdbTest, symbol, TestGuest, TESTGUEST_PATH, TESTGUEST_SEGMENTS } from "./_guest_memory.ts";

const WILD_WRITE = symbol("wild_write");
/** A return address inside handle_call, for a plausible stack (gdb names the caller from it). */
const AFTER_CALL_IN_HANDLE_CALL = BigInt(symbol("handle_call") + 0x10);

interface Session {
  guest: TestGuest;
  stub: GdbStub;
  client: SocketConnection;
  errors: unknown[];
  /** Sends framed packets. */
  send(...packets: (string | Uint8Array)[]): void;
  /** Sends raw bytes. */
  raw(s: string): void;
  /** Everything the stub sent so far, raw. */
  rawReplies(): string;
  /** The packets the stub sent so far (acks dropped), as strings. */
  replies(): string[];
}

function session(guest = new TestGuest(), execFile?: string): Session {
  const listener = LoopbackListener.listen(0);
  const client = SocketConnection.connect(listener.port);
  const server = listener.accept(5000)!;
  listener.close();
  const errors: unknown[] = [];
  const stub = new GdbStub(guest, server, { onError: (e) => errors.push(e), execFile });
  const buf = new Uint8Array(65536);
  const rawReplies = () => {
    let s = "";
    while (client.readable(0)) {
      const n = client.read(buf);
      if (n === 0) break;
      s += bytesToLatin1(buf.subarray(0, n));
    }
    return s;
  };
  return {
    guest,
    stub,
    client,
    errors,
    send: (...packets) => packets.forEach((p) => client.write(framePacket(p))),
    raw: (s) => client.write(latin1ToBytes(s)),
    rawReplies,
    replies: () => {
      const r = new PacketReader();
      r.push(latin1ToBytes(rawReplies()));
      const out: string[] = [];
      for (let e = r.next(); e !== undefined; e = r.next()) {
        if (e.kind === "packet") {
          assert.ok(e.checksumOk, "the stub's checksums are right");
          out.push(bytesToLatin1(e.body));
        }
      }
      return out;
    },
  };
}

/** Runs the stub on the packets and returns its action and replies. */
function exchange(
  s: Session,
  stop: StopReason,
  ...packets: (string | Uint8Array)[]
): [ResumeAction, string[]] {
  s.send(...packets);
  const action = s.stub.onStop(stop);
  return [action, s.replies()];
}

Deno.test("handshake: acks, qSupported, thread queries, unknown packets get an empty reply", () => {
  const s = session();
  s.send("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", "vMustReplyEmpty", "Hg0", "?");
  s.send("qAttached", "qC", "qfThreadInfo", "qsThreadInfo", "qSymbol::", "qTStatus", "Tp1.1", "!", "c");
  const action = s.stub.onStop({ kind: "attach" });
  assert.deepEqual(action, { kind: "continue" });
  const raw = s.rawReplies();
  assert.ok(raw.startsWith("+$"), "ack first, then the reply");
  const r = new PacketReader();
  r.push(latin1ToBytes(raw));
  const replies: string[] = [];
  for (let e = r.next(); e; e = r.next()) if (e.kind === "packet") replies.push(bytesToLatin1(e.body));
  assert.equal(
    replies[0],
    "PacketSize=4000;QStartNoAckMode+;qXfer:features:read+;swbreak+;hwbreak-;vContSupported+",
  );
  assert.equal(replies[1], "");
  assert.equal(replies[2], "OK");
  assert.match(replies[3], /^T0506:0{16};07:[0-9a-f]{16};10:0000200000000000;thread:1;$/);
  assert.deepEqual(replies.slice(4), ["1", "QC1", "m1", "l", "OK", "", "OK", ""]);
  s.stub.close();
  s.client.close();
});

Deno.test("the guest binary's path is served as the exec file, in chunks, when the stub knows it", () => {
  const path = "/guests/dir with spaces/t#e$s}t*guest";
  const s = session(new TestGuest(), path);
  s.send("qSupported:swbreak+", "qXfer:exec-file:read::0,fff", "qXfer:exec-file:read:1:0,5");
  s.send("qXfer:exec-file:read:1:5,1000", "qXfer:exec-file:read::1000,10", "qXfer:exec-file:read:zz", "c");
  s.stub.onStop({ kind: "attach" });
  const [supported, whole, first, rest, beyond, bad] = s.replies().map((r) =>
    r[0] === "m" || r[0] === "l" ? r[0] + bytesToLatin1(unescapeBinary(latin1ToBytes(r.slice(1)))!) : r
  );
  assert.match(supported, /;qXfer:exec-file:read\+/);
  assert.equal(whole, `l${path}`);
  assert.equal(first, "m/gues");
  assert.equal(rest, `l${path.slice(5)}`);
  assert.deepEqual([beyond, bad], ["E22", "E22"]);
  s.stub.close();
  s.client.close();

  const none = session();
  none.send("qSupported:swbreak+", "qXfer:exec-file:read::0,fff", "c");
  none.stub.onStop({ kind: "attach" });
  const [noExec, refused] = none.replies();
  assert.ok(!noExec.includes("exec-file"));
  assert.equal(refused, "E00");
  none.stub.close();
  none.client.close();
});

Deno.test("no-ack mode, nacks, bad checksums and overlong packets", () => {
  const s = session();
  s.raw("$?#00"); // bad checksum: nacked, not answered
  s.send("qC");
  s.raw("-"); // the qC reply was damaged: resend it
  s.send("QStartNoAckMode");
  s.raw("+"); // gdb acks the OK, then nobody acks any more
  s.raw("$qC#00"); // no-ack mode: the checksum is not checked
  s.raw("$" + "a".repeat(20000) + "#00");
  s.send("c");
  s.stub.onStop({ kind: "attach" });
  const f = (p: string) => bytesToLatin1(framePacket(p));
  assert.equal(s.rawReplies(), "-+" + f("QC1") + f("QC1") + "+" + f("OK") + f("QC1") + f("E22"));
  s.stub.close();
  s.client.close();
});

Deno.test("the target description is served in chunks that reassemble exactly", () => {
  const s = session();
  const parts: string[] = [];
  for (let off = 0; off < TARGET_XML.length + 100; off += 0x100) {
    s.send(`qXfer:features:read:target.xml:${off.toString(16)},100`);
  }
  s.send("qXfer:features:read:other.xml:0,100", "qXfer:features:read:target.xml:zz", "c");
  s.stub.onStop({ kind: "attach" });
  const replies = s.replies();
  const errors = replies.splice(-2);
  let ended = false;
  for (const r of replies) {
    if (ended) {
      assert.ok(r === "l" || r === "E22", `past the end: ${r}`);
      continue;
    }
    assert.ok(r[0] === "m" || r[0] === "l");
    parts.push(r.slice(1));
    ended = r[0] === "l";
  }
  assert.equal(parts.join(""), TARGET_XML);
  assert.deepEqual(errors, ["E00", "E22"]);
  s.stub.close();
  s.client.close();
});

Deno.test("registers: g, G, p, P, with selectors and privileged flags protected", () => {
  const s = session();
  s.guest.registers.rax = 0x1122334455667788n;
  const [, r1] = exchange(s, { kind: "attach" }, "g", "p0", "p10", "p3b", "pzz", "c");
  assert.equal(r1[0].length, 552 * 2);
  assert.equal(r1[0].slice(0, 16), "8877665544332211");
  assert.deepEqual(r1.slice(1), ["8877665544332211", "0000200000000000", "E22", "E22"]);
  // P rip, eflags (TF + IF asked: IF is the host's), cs (refused), fs_base.
  const [, r2] = exchange(
    s,
    { kind: "exception", vector: 1 },
    "P10=0010200000000000",
    "P11=00030000",
    "P12=08000000",
    "P39=0000100000000000",
    "P10=00",
    "c",
  );
  assert.deepEqual(r2.slice(1), ["OK", "OK", "E13", "OK", "E22"]);
  assert.equal(s.guest.registers.rip, 0x201000n);
  assert.equal(s.guest.registers.rflags, 0x102n);
  assert.equal(s.guest.registers.cs, 0x33n);
  assert.equal(s.guest.registers.fsBase, 0x100000n);
  // G round trip with one change; x87/SSE registers as 'xx' are left alone.
  const g = r1[0];
  const changed = "efbeadde00000000" + g.slice(16);
  const [, r3] = exchange(s, { kind: "exception", vector: 1 }, "G" + changed, "G" + g.slice(0, 20), "c");
  assert.deepEqual(r3.slice(1), ["OK", "E22"]);
  assert.equal(s.guest.registers.rax, 0xdeadbeefn);
  s.guest.registers.fxsave = undefined;
  const [, r4] = exchange(s, { kind: "exception", vector: 1 }, "g", "p28", "c");
  const noFx = r4[1];
  assert.ok(noFx.slice(164 * 2, 536 * 2).split("").every((c) => c === "x"), "x87/SSE unavailable");
  assert.equal(r4[2], "xx".repeat(16));
  const [, r5] = exchange(s, { kind: "exception", vector: 1 }, "G" + noFx, "c");
  assert.equal(r5[1], "OK");
  s.stub.close();
  s.client.close();
});

Deno.test("memory: reads, partial reads, hex and binary writes, and the system area stays read-only", () => {
  const s = session();
  const end = s.guest.layout.persistentEnd;
  s.guest.bytes.set([1, 2, 3, 4], end - 4);
  const before = s.guest.bytes.slice();
  const binary = new Uint8Array([0x23, 0x24, 0x7d, 0x2a, 0x03, 0x00]);
  const x = new Uint8Array([...latin1ToBytes("X204010,6:"), ...escapeBinary(binary)]);
  const [, r] = exchange(
    s,
    { kind: "attach" },
    "m200000,4",
    "m0,4",
    `m${(end - 4).toString(16)},10`, // runs into the stack guard: the readable part comes back
    "m2000,2", // system area: readable
    "M204000,2:abcd",
    "M2000,1:00", // system area: refused
    "M204000,2:ab", // length mismatch
    x,
    "X204000,0:", // gdb's probe for X
    "X2000,1:\x01",
    "mffffffffffffffff,8",
    "m204000,ffffffff", // more than a packet: clamped, not an error
    "m,",
    "c",
  );
  assert.deepEqual(r.slice(0, 11), [
    toHex(before.subarray(0x200000, 0x200004)),
    "E14",
    "01020304",
    "f4f4",
    "OK",
    "E13",
    "E22",
    "OK",
    "OK",
    "E13",
    "E14",
  ]);
  assert.ok(r[11].length > 1000 && r[11].length <= 0x4000);
  assert.equal(r[12], "E22");
  assert.deepEqual([...s.guest.bytes.subarray(0x204000, 0x204002)], [0xab, 0xcd]);
  assert.deepEqual(s.guest.bytes.subarray(0x204010, 0x204016), binary);
  assert.equal(s.guest.bytes[0x2000], 0xf4);
  s.stub.close();
  s.client.close();
});

Deno.test("breakpoints: int3 written host-side, shadowed on reads, writes update the saved byte", () => {
  const s = session();
  const at = WILD_WRITE.toString(16);
  const original = s.guest.bytes.slice(WILD_WRITE, WILD_WRITE + 2);
  const [, r] = exchange(
    s,
    { kind: "attach" },
    `Z0,${at},1`,
    `Z0,${at},1`, // twice: fine
    `m${at},2`,
    "Z0,2000,1", // system area
    "Z0,0,1", // unmapped
    "Z1,200000,1", // hardware: unsupported
    "Z0,zz,1",
    `z0,${(WILD_WRITE + 1).toString(16)},1`, // not inserted: fine
    "c",
  );
  assert.deepEqual(r, ["OK", "OK", toHex(original), "E14", "E14", "", "E22", "OK"]);
  assert.equal(s.guest.bytes[WILD_WRITE], 0xcc);
  assert.deepEqual(s.stub.breakpoints, [BigInt(WILD_WRITE)]);
  // A write over the breakpoint keeps the int3 and changes what removal restores.
  exchange(s, { kind: "exception", vector: 1 }, `M${at},1:90`, "c");
  assert.equal(s.guest.bytes[WILD_WRITE], 0xcc);
  exchange(s, { kind: "exception", vector: 1 }, `z0,${at},1`, "c");
  assert.equal(s.guest.bytes[WILD_WRITE], 0x90);
  assert.deepEqual(s.stub.breakpoints, []);
  s.stub.close();
  s.client.close();
});

Deno.test("continue to a breakpoint: with swbreak the stub moves RIP back onto the int3", () => {
  for (const swbreak of [true, false]) {
    const s = session();
    const [a1] = exchange(
      s,
      { kind: "attach" },
      swbreak ? "qSupported:swbreak+" : "qSupported:hwbreak+",
      `Z0,${WILD_WRITE.toString(16)},1`,
      "vCont;c",
    );
    assert.deepEqual(a1, { kind: "continue" });
    // The guest runs into the int3: #BP, the frame's RIP is past it.
    s.guest.registers.rip = BigInt(WILD_WRITE + 1);
    const [a2, r] = exchange(s, { kind: "exception", vector: 3 }, "c");
    assert.deepEqual(a2, { kind: "continue" });
    const rip = swbreak ? WILD_WRITE : WILD_WRITE + 1;
    assert.equal(s.guest.registers.rip, BigInt(rip));
    const ripHex = toHex(new Uint8Array(new BigUint64Array([BigInt(rip)]).buffer));
    assert.match(r[0], new RegExp(`^T05.*10:${ripHex};thread:1;${swbreak ? "swbreak:;" : ""}$`));
    // The guest's own int3 (not a breakpoint of ours) is a plain SIGTRAP; RIP stays past it.
    s.guest.registers.rip = 0x200101n;
    const [, r2] = exchange(s, { kind: "exception", vector: 3 }, "c");
    assert.equal(s.guest.registers.rip, 0x200101n);
    assert.doesNotMatch(r2[0], /swbreak/);
    s.stub.close();
    s.client.close();
  }
});

Deno.test("single step: the stub sets TF for the step and clears it at the next stop", () => {
  const s = session();
  const [a1, r1] = exchange(s, { kind: "attach" }, "vCont?", "vCont;s:1;c");
  assert.deepEqual(a1, { kind: "step" });
  assert.deepEqual(r1, ["vCont;c;C;s;S"]);
  assert.equal(s.guest.registers.rflags & RFLAGS_TF, RFLAGS_TF);
  // The CPU pushes RFLAGS with TF still set; the run loop restores it as is.
  s.guest.registers.rip += 2n;
  const [a2, r] = exchange(
    s,
    { kind: "exception", vector: 1 },
    "s",
    "S05",
    "C0b",
    "c202780",
    "s200000",
    "cxyz",
  );
  assert.equal(r.length, 1);
  assert.match(r[0], /^T05/);
  assert.deepEqual(a2, { kind: "step" });
  assert.equal(s.guest.registers.rflags & RFLAGS_TF, RFLAGS_TF);
  assert.deepEqual(s.stub.onStop({ kind: "exception", vector: 1 }), { kind: "step", signal: 5 });
  assert.deepEqual(s.stub.onStop({ kind: "exception", vector: 1 }), { kind: "continue", signal: 11 });
  assert.equal(s.guest.registers.rflags & RFLAGS_TF, 0n, "TF cleared after the step");
  assert.deepEqual(s.stub.onStop({ kind: "exception", vector: 14 }), { kind: "continue" });
  assert.equal(s.guest.registers.rip, 0x202780n);
  assert.deepEqual(s.stub.onStop({ kind: "exception", vector: 14 }), { kind: "step" });
  assert.equal(s.guest.registers.rip, 0x200000n);
  s.send("c");
  assert.deepEqual(s.stub.onStop({ kind: "exception", vector: 1 }), { kind: "continue" });
  const stops = s.replies();
  assert.deepEqual(stops.map((x) => x.slice(0, 3)), ["T05", "T05", "T0b", "T0b", "T05", "E22"]);
  s.stub.close();
  s.client.close();
});

Deno.test("stop replies carry the signal of the exception", () => {
  const s = session();
  exchange(s, { kind: "attach" }, "c");
  const cases: [StopReason, string][] = [
    [{ kind: "exception", vector: 0 }, "T08"],
    [{ kind: "exception", vector: 6 }, "T04"],
    [{ kind: "exception", vector: 13 }, "T0b"],
    [{ kind: "exception", vector: 14, faultAddress: 0x10n }, "T0b"],
    [{ kind: "exception", vector: 17 }, "T0a"], // SIGBUS is 10 in gdb's numbering
    [{ kind: "signal", signal: "SIGABRT" }, "T06"],
    [{ kind: "interrupt" }, "T02"],
  ];
  for (const [stop, expected] of cases) {
    const [, r] = exchange(s, stop, "?", "c");
    assert.equal(r[0].slice(0, 3), expected, Deno.inspect(stop));
    assert.equal(r[1], r[0], "? repeats the last stop");
  }
  s.stub.close();
  s.client.close();
});

Deno.test("Ctrl-C while running is seen by interruptRequested without blocking", () => {
  const s = session();
  exchange(s, { kind: "attach" }, "c");
  assert.equal(s.stub.interruptRequested(), false);
  s.raw("\x03");
  let seen = false;
  for (let i = 0; i < 1000 && !seen; i++) seen = s.stub.interruptRequested(); // the byte may take a moment
  assert.ok(seen);
  assert.ok(s.stub.interruptRequested(), "stays requested until the stop is reported");
  const [action, r] = exchange(s, { kind: "interrupt" }, "c");
  assert.match(r[0], /^T02/);
  assert.deepEqual(action, { kind: "continue" });
  assert.equal(s.stub.interruptRequested(), false);
  // Packets while running are kept for the next stop, but a flood of them is not gdb: the stub hangs up.
  for (let i = 0; i < 100; i++) s.send("qC");
  let flooded = false;
  for (let i = 0; i < 1000 && !flooded; i++) flooded = s.stub.interruptRequested();
  assert.ok(flooded);
  assert.deepEqual(s.stub.onStop({ kind: "interrupt" }), { kind: "detach" });
  assert.equal(s.stub.attached, false);
  s.client.close();
});

Deno.test("exit replies, kill, detach and disconnects clean up breakpoints and TF", () => {
  // Exit after continue: W / X, then the connection is closed.
  for (
    const [status, expected] of [[{ kind: "exited", code: 0 }, "W00"], [{
      kind: "signaled",
      signal: "SIGSEGV",
    }, "X0b"]] as const
  ) {
    const s = session();
    exchange(s, { kind: "attach" }, "c");
    s.stub.onExit(status);
    assert.deepEqual(s.replies(), [expected]);
    assert.equal(s.client.read(new Uint8Array(1)), 0, "closed");
    assert.equal(s.stub.attached, false);
    assert.deepEqual(s.stub.onStop({ kind: "interrupt" }), { kind: "detach" });
    s.client.close();
  }
  const bp = `Z0,${WILD_WRITE.toString(16)},1`;
  const check = (s: Session) => {
    assert.notEqual(s.guest.bytes[WILD_WRITE], 0xcc, "breakpoint removed");
    assert.equal(s.guest.registers.rflags & RFLAGS_TF, 0n, "TF clear");
    assert.equal(s.stub.attached, false);
  };
  for (
    const [packets, action, reply] of [
      [["D"], "detach", ["OK"]],
      [["D;1"], "detach", ["OK"]],
      [["k"], "kill", []],
      [["vKill;1"], "kill", ["OK"]],
    ] as const
  ) {
    const s = session();
    exchange(s, { kind: "attach" }, bp, "s");
    const [a, r] = exchange(s, { kind: "exception", vector: 1 }, ...packets);
    assert.deepEqual(a, { kind: action });
    assert.deepEqual(r.slice(1), reply);
    check(s);
    s.client.close();
  }
  // gdb goes away while stopped, and while running.
  const stopped = session();
  stopped.send(bp);
  stopped.client.close();
  assert.deepEqual(stopped.stub.onStop({ kind: "attach" }), { kind: "detach" });
  check(stopped);
  const running = session();
  exchange(running, { kind: "attach" }, bp, "s");
  running.client.close();
  let seen = false;
  for (let i = 0; i < 1000 && !seen; i++) seen = running.stub.interruptRequested();
  assert.ok(seen, "a disconnect stops the guest too");
  assert.deepEqual(running.stub.onStop({ kind: "interrupt" }), { kind: "detach" });
  check(running);
});

Deno.test("gdb without swbreak going away at a breakpoint: the stub moves RIP back onto the instruction", () => {
  for (const leave of ["D", "drop", "k"] as const) {
    const s = session();
    exchange(s, { kind: "attach" }, "qSupported:hwbreak+", `Z0,${WILD_WRITE.toString(16)},1`, "c");
    // The guest ran into the int3: the CPU pushed the address after it.
    s.guest.registers = { ...s.guest.registers, rip: BigInt(WILD_WRITE + 1) };
    if (leave === "drop") s.client.close();
    const [action] = leave === "drop"
      ? [s.stub.onStop({ kind: "exception", vector: 3 })]
      : exchange(s, { kind: "exception", vector: 3 }, leave);
    assert.equal(action.kind, leave === "k" ? "kill" : "detach");
    assert.equal(s.guest.registers.rip, BigInt(WILD_WRITE), leave);
    assert.notEqual(s.guest.bytes[WILD_WRITE], 0xcc);
    if (leave !== "drop") s.client.close();
  }
  // gdb moved it back itself and stepped on: nothing to undo.
  const s = session();
  exchange(s, { kind: "attach" }, "qSupported:hwbreak+", `Z0,${WILD_WRITE.toString(16)},1`, "c");
  s.guest.registers = { ...s.guest.registers, rip: BigInt(WILD_WRITE + 1) };
  exchange(s, { kind: "exception", vector: 3 }, `P10=${toHex(le64(BigInt(WILD_WRITE)))}`, "s");
  s.guest.registers = { ...s.guest.registers, rip: BigInt(WILD_WRITE + 4) };
  exchange(s, { kind: "exception", vector: 1 }, "D");
  assert.equal(s.guest.registers.rip, BigInt(WILD_WRITE + 4));
  s.client.close();
});

Deno.test("withoutBreakpoints takes int3s out and puts them back over replaced memory", () => {
  const s = session();
  exchange(s, { kind: "attach" }, `Z0,${WILD_WRITE.toString(16)},1`, "c");
  assert.equal(s.guest.bytes[WILD_WRITE], 0xcc);
  const seen = s.stub.withoutBreakpoints(() => {
    const b = s.guest.bytes[WILD_WRITE];
    s.guest.bytes[WILD_WRITE] = 0x55; // e.g. a snapshot restore replaced the page
    return b;
  });
  assert.equal(seen, 0x48);
  assert.equal(s.guest.bytes[WILD_WRITE], 0xcc);
  s.stub.close();
  assert.equal(s.guest.bytes[WILD_WRITE], 0x55, "close restores the byte read at re-insertion");
  s.client.close();

  // A breakpoint whose page is gone after fn is dropped, reported, and does not hide fn's result.
  const t = session();
  exchange(t, { kind: "attach" }, `Z0,${WILD_WRITE.toString(16)},1`, "Z0,200000,1", "c");
  const pte = 0x8000 + (WILD_WRITE >> 12) * 8;
  const saved = t.guest.bytes.slice(pte, pte + 8);
  assert.equal(t.stub.withoutBreakpoints(() => (t.guest.bytes.fill(0, pte, pte + 8), 7)), 7);
  assert.deepEqual(t.stub.breakpoints, [0x200000n]);
  assert.ok(t.errors.some((e) => e instanceof GuestAddressError && e.problem === "not mapped"));
  t.guest.bytes.set(saved, pte);
  assert.notEqual(t.guest.bytes[WILD_WRITE], 0xcc);
  t.stub.close();
  t.client.close();
});

Deno.test("random packets never make the stub throw", () => {
  // A deterministic generator (xorshift) of packets made of command letters, hex and junk.
  let x = 0x2545f491;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const pieces = [
    "m",
    "M",
    "X",
    "g",
    "G",
    "p",
    "P",
    "Z0",
    "z0",
    "Z",
    "v",
    "vCont;",
    "q",
    "qXfer:features:read:target.xml:",
    "H",
    "T",
    "?",
    "Q",
    ",",
    ":",
    ";",
    "=",
    "}",
    "ff",
    "200000",
    "ffffffffffffffff",
    "10",
    "xx",
    "-1",
  ];
  const s = session();
  s.send("c");
  let action = s.stub.onStop({ kind: "attach" });
  let answered = 0;
  for (let batch = 0; batch < 60 && s.stub.attached; batch++) {
    for (let i = 0; i < 10; i++) {
      let p = "";
      for (let j = rnd(6); j >= 0; j--) p += pieces[rnd(pieces.length)];
      if (/^(D|k|vKill|c|s|C|S|vCont;)/.test(p)) p = "q" + p; // keep the session going
      s.send(p.replace(/^(m|qXfer[^,]*,?)([0-9a-f]*),.*/, "$1$2,40")); // keep replies small
    }
    s.send("qC", "c");
    for (;;) {
      action = s.stub.onStop({ kind: "exception", vector: 1 });
      const r = s.replies();
      answered += r.length;
      if (r.includes("QC1") || action.kind !== "continue") break;
    }
  }
  assert.ok(s.stub.attached);
  assert.ok(answered >= 60 * 12, `${answered} replies`); // every packet, the marker and a stop per batch
  // The stub answers E01 for unexpected exceptions; none may come from the stub's own parsing.
  const unexpected = s.errors.filter((e) => !(e instanceof GuestAddressError));
  assert.deepEqual(unexpected, []);
  s.stub.close();
  s.client.close();
});

/** What the simulated vCPU does when the stub lets it run. */
type Runner = (guest: TestGuest, action: ResumeAction) => StopReason | { exit: ExitStatus };

/**
 * Runs real gdb against the stub on testguest: gdb connects, runs `commands` in batch mode and quits
 * (quitting detaches: the stub says the process was attached to). `run` plays the vCPU.
 */
async function withGdb(
  guest: TestGuest,
  commands: string[],
  run: Runner,
): Promise<{ out: string; err: string; last: ResumeAction }> {
  using listener = LoopbackListener.listen(0);
  const child = new Deno.Command("gdb", {
    args: [
      "-nx",
      "-batch",
      "-ex",
      "set pagination off",
      "-ex",
      `target remote 127.0.0.1:${listener.port}`,
      ...commands.flatMap((c) => ["-ex", c]),
      TESTGUEST_PATH,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const conn = listener.accept(30_000);
  assert.ok(conn, "gdb connected");
  const stub = new GdbStub(guest, conn);
  let action = stub.onStop({ kind: "attach" });
  while (action.kind === "continue" || action.kind === "step") {
    const next = run(guest, action);
    if ("exit" in next) {
      stub.onExit(next.exit);
      break;
    }
    action = stub.onStop(next);
  }
  stub.close();
  const output = await child.output();
  return {
    out: new TextDecoder().decode(output.stdout),
    err: new TextDecoder().decode(output.stderr),
    last: action,
  };
}

/** Runs to the first int3 the stub wrote into wild_write, steps by the 4-byte first instruction. */
const toBreakpoint: Runner = (g, action) => {
  if (action.kind === "step") {
    assert.equal(g.registers.rflags & RFLAGS_TF, RFLAGS_TF, "TF set for the step");
    g.registers.rip += 4n; // mov 0x8(%rdi),%rax
    return { kind: "exception", vector: 1 };
  }
  if (g.bytes[WILD_WRITE] === 0xcc) {
    g.registers.rip = BigInt(WILD_WRITE + 1); // the CPU reports the address after the int3
    return { kind: "exception", vector: 3 };
  }
  return { exit: { kind: "exited", code: 0 } };
};

/** The first page of the test guest's writable data, as gdb prints it. */
const DATA = `0x${TESTGUEST_SEGMENTS.data.toString(16)}`;

gdbTest("gdb reads and writes registers and memory, stops at a breakpoint, steps and detaches", async () => {
  const g = new TestGuest();
  const first = [...g.bytes.subarray(0x200000, 0x200004)].map((b) => `0x${b.toString(16).padStart(2, "0")}`);
  const original = g.bytes[WILD_WRITE];
  const { out, err, last } = await withGdb(g, [
    "info registers rip",
    "x/4xb 0x200000",
    `set var *(char*)${DATA} = 1`,
    `x/1xb ${DATA}`,
    "x/2xb 0x2000",
    "set var *(char*)0x2000 = 1",
    "break wild_write",
    "continue",
    "stepi",
    "info registers rip",
    "set var $rax = 0x1234",
    "p $xmm0.v16_int8",
    "p/x $mxcsr",
    "p $cs",
    "detach",
  ], toBreakpoint);
  assert.match(out, /rip\s+0x200000\s+0x200000 <_start>/);
  assert.ok(out.includes(`0x200000 <_start>:\t${first.join("\t")}`), out);
  assert.match(out, new RegExp(`${DATA} <\\w+>:\\t0x01`));
  assert.match(out, /0x2000:\t0xf4\t0xf4/);
  assert.match(err, /Cannot access memory at address 0x2000/);
  assert.match(out, new RegExp(`Breakpoint 1, 0x${hex16(WILD_WRITE)} in wild_write \\(\\)`));
  assert.match(out, new RegExp(`0x${hex16(WILD_WRITE + 4)} in wild_write \\(\\)`));
  assert.match(
    out,
    new RegExp(
      `rip\\s+0x${(WILD_WRITE + 4).toString(16)}\\s+0x${(WILD_WRITE + 4).toString(16)} <wild_write\\+4>`,
    ),
  );
  assert.match(out, /\{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16\}/);
  assert.match(out, /= 0x1f80/);
  assert.match(out, /= 51/); // cs 0x33
  assert.match(out, /\[Inferior 1 \(Remote target\) detached\]/);
  assert.deepEqual(last, { kind: "detach" });
  assert.equal(g.bytes[TESTGUEST_SEGMENTS.data], 1);
  assert.equal(g.bytes[0x2000], 0xf4);
  assert.equal(g.bytes[WILD_WRITE], original, "breakpoint removed");
  assert.equal(g.registers.rax, 0x1234n);
  assert.equal(g.registers.rflags & RFLAGS_TF, 0n);
});

gdbTest("gdb sees a guest fault as SIGSEGV with a backtrace, and continuing ends the program", async () => {
  const g = new TestGuest();
  let faulted = false;
  const { out, last } = await withGdb(
    g,
    ["continue", "bt", "p $_siginfo.si_signo", "continue"],
    (guest, action) => {
      if (!faulted) {
        // wild_write, called from handle_call, faults on its store (rip at the movb).
        faulted = true;
        const rsp = guest.layout.stackTop - 0x100;
        new DataView(guest.bytes.buffer).setBigUint64(rsp, AFTER_CALL_IN_HANDLE_CALL, true);
        guest.registers.rip = BigInt(WILD_WRITE + 4);
        guest.registers.rsp = BigInt(rsp);
        return { kind: "exception", vector: 14, faultAddress: 0x10n };
      }
      // gdb continues with the signal: the run loop ends the call as a crash.
      assert.deepEqual(action, { kind: "continue", signal: 11 });
      return { exit: { kind: "signaled", signal: "SIGSEGV" } };
    },
  );
  assert.match(out, /Program received signal SIGSEGV, Segmentation fault\./);
  assert.match(out, new RegExp(`#0 +0x${hex16(WILD_WRITE + 4)} in wild_write \\(\\)`));
  assert.match(out, new RegExp(`#1 +0x${hex16(Number(AFTER_CALL_IN_HANDLE_CALL))} in handle_call \\(\\)`));
  assert.match(out, /Program terminated with signal SIGSEGV, Segmentation fault\./);
  assert.deepEqual(last, { kind: "continue", signal: 11 });
});

gdbTest("gdb reports a guest that ends normally as exited", async () => {
  const { out } = await withGdb(new TestGuest(), ["continue"], toBreakpoint);
  assert.match(out, /\[Inferior 1 \(Remote target\) exited normally\]/);
});

function le64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

/** An address as gdb prints it in frames: 16 hex digits. */
function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}
