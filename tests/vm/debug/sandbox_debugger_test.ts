/**
 * The debugger on real sandboxes (KVM): a scripted gdb remote protocol client in a Worker talks to the
 * stub of a sandbox while this thread makes the calls. Checks that #BP and #DB raised by CPL3 guest code
 * reach the stub with the exact RIP, that registers (x87/SSE included) and memory go both ways, that
 * restores undo what the debugger wrote and snapshots never keep breakpoints, Ctrl-C, the paused time
 * limit, faults and aborts, disconnects, and core dumps.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  CONFIG_LIMITS,
  GuestAbortedError,
  GuestCrashedError,
  HostFunctions,
  MemoryAccessViolationError,
  MultiUseSandbox,
  SandboxClosedError,
  type SandboxConfiguration,
  setLogger,
  UninitializedSandbox,
} from "../../../mod.ts";
import { parseElf } from "../../../vm/machine/elf.ts";
import { PF_W, PF_X } from "../../../vm/machine/elf.ts";
import { GDB_REGNUM } from "../../../vm/debug/target_description.ts";
import { stubVector } from "../../../vm/debug/sandbox_debugger.ts";
import { IDT_ADDR, IDT_VECTORS, PORT_EXCEPTION, STUB_ADDR } from "../../../vm/machine/abi.ts";
import { STUB_SIZE, writeSystemArea } from "../../../vm/machine/system_area.ts";
import { computeLayout } from "../../../vm/machine/layout.ts";
import { vmTest } from "../../_hypervisor.ts";
import { freePort, hexLE, littleEndian, startScript, type Step, stopRegister } from "./_rsp_client.ts";
import { symbol, TESTGUEST, TESTGUEST_PATH } from "./_guest_memory.ts";

/**
 * A test of the gdb stub on a real sandbox: it needs the hypervisor, and Linux (the stub's sockets are
 * libc's); elsewhere it is skipped with one loud line.
 */
function stubTest(name: string, fn: () => void | Promise<void>): void {
  if (Deno.build.os === "linux") return vmTest(name, fn);
  if (!warnedOs) {
    console.error(`!!! the gdb stub runs on Linux only: SKIPPING its sandbox tests on ${Deno.build.os} !!!`);
    warnedOs = true;
  }
  Deno.test({ name, ignore: true, fn });
}
let warnedOs = false;

const ECHO = BigInt(symbol("echo"));
const WILD_WRITE = BigInt(symbol("wild_write"));
const G_STATIC = BigInt(symbol("g_static"));
const ELF = parseElf(TESTGUEST);
/** A read-only data page of testguest, which the guest never writes. */
const RODATA = BigInt(ELF.segments.find((s) => (s.flags & (PF_W | PF_X)) === 0)!.vaddr);

/** The last word of the output buffer of a testguest sandbox with the default sizes: calls never reach it. */
const OUTPUT_END = (() => {
  const l = computeLayout({
    imageEnd: ELF.end,
    heapSize: CONFIG_LIMITS.heapSize[2],
    stackSize: CONFIG_LIMITS.stackSize[2],
    inputDataSize: CONFIG_LIMITS.inputDataSize[2],
    outputDataSize: CONFIG_LIMITS.outputDataSize[2],
  });
  return BigInt(l.outputBase + l.outputSize - 8);
})();

const hex = (v: bigint) => v.toString(16);
const RIP = GDB_REGNUM.RIP;

function hostFns(): HostFunctions {
  return new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
}

function testguest(config: SandboxConfiguration): UninitializedSandbox {
  return new UninitializedSandbox(TESTGUEST_PATH, config, hostFns());
}

/** Quiet logger for the "waiting for gdb" records, restored afterwards. */
function quietly<T>(fn: () => Promise<T>): Promise<T> {
  setLogger(() => {});
  return fn().finally(() => setLogger(undefined));
}

stubTest(
  "#BP and #DB raised at CPL3 reach the stub exactly; registers and x87/SSE state go both ways",
  () =>
    quietly(async () => {
      const port = freePort();
      const run = startScript(port, [
        { send: "qSupported:hwbreak+" }, // no swbreak: the stub reports RIP as the CPU pushed it
        { send: "?" },
        { send: `Z0,${hex(ECHO)},1` },
        { send: "c" }, // init runs to its end; the stop is EchoI32's breakpoint
        { send: `z0,${hex(ECHO)},1` },
        { send: `P${hex(BigInt(RIP))}=${hexLE(ECHO, 8)}` },
        { send: "s" }, // movdqu (%rdi),%xmm0
        { send: `p${hex(BigInt(GDB_REGNUM.XMM0))}` },
        { send: `P${hex(BigInt(GDB_REGNUM.XMM0))}=${hexLE(1n, 4)}00000000${hexLE(42n, 4)}00000000` },
        { send: "s" }, // movups %xmm0,(%rdx): the result is now xmm0
        { send: "g" },
        { send: "c" }, // answered with W00 when the sandbox is closed
      ]);
      const sbx = testguest({ gdbPort: port }).evolve();
      assert.equal(sbx.call("EchoI32", 7), 42, "the result is the xmm0 gdb wrote");
      sbx.close();
      const [, attach, setBp, atInt3, , , step1, xmm0, , step2, g, exit] = await run.done;
      assert.equal(stopRegister(attach, RIP), BigInt(ELF.entry), "stopped at the entry of guest init");
      assert.equal(setBp, "OK");
      assert.match(atInt3, /^T05/);
      assert.equal(stopRegister(atInt3, RIP), ECHO + 1n, "#BP: RIP after the int3");
      assert.equal(stopRegister(step1, RIP), ECHO + 4n, "#DB: one instruction (4-byte movdqu)");
      // xmm0 = the first 16 bytes of args[0]: type SV_I32 (1), then the value 7.
      assert.equal(littleEndian(xmm0.slice(0, 8)), 1n);
      assert.equal(littleEndian(xmm0.slice(16, 24)), 7n);
      assert.equal(stopRegister(step2, RIP), ECHO + 7n, "#DB: one instruction (3-byte movups)");
      // `g`: the CPL3 state, not the stub's (CS 0x33, SS 0x2b; eflags without TF).
      // 16 GPRs and rip of 8 bytes, then eflags, cs, ss of 4.
      const reg = (hexOffset: number, size: number) => littleEndian(g.slice(hexOffset, hexOffset + size * 2));
      assert.equal(reg(RIP * 16, 8), ECHO + 7n);
      assert.equal(reg(GDB_REGNUM.EFLAGS * 16, 4) & 0x100n, 0n, "TF cleared after the step");
      assert.equal(reg(GDB_REGNUM.EFLAGS * 16 + 8, 4), 0x33n, "cs");
      assert.equal(reg(GDB_REGNUM.EFLAGS * 16 + 16, 4), 0x2bn, "ss");
      assert.equal(exit, "W00");
    }),
);

stubTest("single-stepping through a function keeps every register, RAX included", () =>
  quietly(async () => {
    const port = freePort();
    const addToStatic = BigInt(symbol("add_to_static"));
    const run = startScript(port, [
      { send: "qSupported:swbreak+" },
      { send: `Z0,${hex(addToStatic)},1` },
      { send: "c" },
      { send: `z0,${hex(addToStatic)},1` },
      { send: "s" }, // mov g_static(%rip),%eax
      { send: "s" }, // add 0x8(%rdi),%eax
      { send: "p0" }, // rax
      { send: "s" },
      { send: "s" },
      { post: "c" },
    ]);
    using sbx = testguest({ gdbPort: port }).evolve();
    assert.equal(sbx.call("AddToStatic", 5), 5, "RAX survived every stop");
    assert.equal(sbx.call("AddToStatic", 2), 7);
    const replies = await run.done;
    assert.equal(littleEndian(replies[6]), 5n, "RAX after the add, as gdb reads it");
  }));

stubTest(
  "restore undoes memory the debugger wrote; snapshots and restores never keep breakpoints",
  () =>
    quietly(async () => {
      const port = freePort();
      const first = startScript(port, [{ send: "?" }, { send: "D" }]);
      using sbx = testguest({ gdbPort: port }).evolve();
      await first.done;
      const snap = sbx.snapshot();
      // Restored once, the sandbox tracks its scratch pages: a restore then zeroes only the written ones.
      sbx.restore(snap);
      const original = sbx.call("ReadAddr", RODATA) as bigint;
      const patched = original ^ 0x5a5a_5a5a_5a5a_5a5an;

      // A second debugger connects between calls and takes over at the next call.
      const second = startScript(port, [
        { notify: "connected" },
        { send: "qSupported:swbreak+" },
        { send: `M${hex(RODATA)},8:${hexLE(patched, 8)}` },
        { send: `M${hex(OUTPUT_END)},8:${hexLE(patched, 8)}` },
        { send: `Z0,${hex(ECHO)},1` },
        { send: "c" }, // the next stop: EchoI32 after the restore
        { send: "D" },
      ]);
      await second.notified("connected");
      assert.equal(sbx.call("ReadAddr", RODATA), patched, "the guest reads what gdb wrote");
      assert.equal(sbx.call("ReadAddr", OUTPUT_END), patched);

      // The guest never wrote that page, so only the debugger's record of it brings it back.
      sbx.restore(snap);
      assert.equal(sbx.call("ReadAddr", RODATA), original, "restore undid the debugger's write");
      assert.equal(sbx.call("ReadAddr", OUTPUT_END), 0n, "and zeroed the scratch page it wrote");

      // The int3 is in guest memory now; a snapshot must not keep it.
      const withBp = sbx.snapshot();
      using clean = MultiUseSandbox.fromSnapshot(withBp, hostFns());
      assert.equal(clean.call("EchoI32", 3), 3, "no int3 in the snapshot");
      // The breakpoint is still there after the restore: this call stops in gdb, which detaches.
      assert.equal(sbx.call("EchoI32", 5), 5);
      const [, written, writtenStack, bp, stop, detached] = await second.done;
      assert.deepEqual([written, writtenStack, bp, detached], ["OK", "OK", "OK", "OK"]);
      assert.match(stop, /^T05.*swbreak:;$/);
      assert.equal(stopRegister(stop, RIP), ECHO, "swbreak: the stub moved RIP back onto the int3");
    }),
);

stubTest(
  "Ctrl-C stops a spinning guest, the time limit pauses while it is stopped, kill ends the call",
  () =>
    quietly(async () => {
      const port = freePort();
      const limit = 400;
      const steps: Step[] = [
        { send: "?" },
        { post: "c" },
        { sleep: 150 },
        { interrupt: true },
        { sleep: 2 * limit }, // stopped longer than the limit: it must not count
        { post: "c" },
        { sleep: 100 },
        { interrupt: true },
        { post: "k" },
      ];
      const run = startScript(port, steps);
      using sbx = testguest({ gdbPort: port, maxExecutionTimeMs: limit }).evolve();
      assert.throws(() => sbx.call("Spin"), (e: unknown) => {
        assert.ok(e instanceof GuestCrashedError, String(e));
        assert.match(e.message, /killed by the debugger/);
        return true;
      });
      const [, first, second] = await run.done;
      assert.match(first, /^T02/, "SIGINT");
      assert.match(second, /^T02/, "still running after a stop longer than the time limit");
      const rip = stopRegister(second, RIP);
      assert.ok(rip >= BigInt(symbol("spin")) && rip < BigInt(symbol("spin")) + 16n, `in spin: ${hex(rip)}`);
      assert.ok(sbx.poisoned);
    }),
);

stubTest(
  "a fault stops in gdb: fixed and resumed it carries on, passed on it ends the call",
  () =>
    quietly(async () => {
      const port = freePort();
      const run = startScript(port, [
        { send: "?" },
        { send: "c" }, // WildWrite(0x10) faults on its store
        { send: `P0=${hexLE(G_STATIC, 8)}` }, // rax: the address it stores to
        { send: "c" },
        { send: "C0b" }, // the second fault: let the SIGSEGV through
      ]);
      using sbx = testguest({ gdbPort: port }).evolve();
      assert.equal(sbx.call("WildWrite", 0x10n), undefined);
      assert.equal(sbx.call("GetStatic"), 0x5a, "the store went where gdb pointed it");
      assert.throws(() => sbx.call("WildWrite", 0x10n), MemoryAccessViolationError);
      const [, fault, setRax, again, exit] = await run.done;
      assert.match(fault, /^T0b/, "SIGSEGV");
      assert.equal(stopRegister(fault, RIP), WILD_WRITE + 4n, "RIP on the faulting store");
      assert.equal(setRax, "OK");
      assert.match(again, /^T0b/);
      assert.equal(exit, "X0b", "gdb hears the guest died of SIGSEGV");
    }),
);

stubTest("sv_abort stops as SIGABRT; passed on it is the GuestAbortedError", () =>
  quietly(async () => {
    const port = freePort();
    const run = startScript(port, [{ send: "?" }, { send: "c" }, { send: "C06" }]);
    using sbx = testguest({ gdbPort: port }).evolve();
    assert.throws(() => sbx.call("Abort", 3, "boom"), GuestAbortedError);
    const [, abort, exit] = await run.done;
    assert.match(abort, /^T06/);
    assert.equal(exit, "X06");
  }));

stubTest(
  "a debugger that disappears mid-call leaves the sandbox running without it",
  () =>
    quietly(async () => {
      const port = freePort();
      const run = startScript(port, [
        { send: "qSupported:swbreak+" },
        { send: `Z0,${hex(ECHO)},1` },
        { post: "c" },
        { drop: true },
      ]);
      using sbx = testguest({ gdbPort: port }).evolve();
      await run.done;
      assert.equal(sbx.call("EchoI32", 11), 11);
      assert.equal(sbx.call("EchoI32", 12), 12, "the breakpoint is gone");
    }),
);

stubTest(
  "gdbPort 0 listens on a free port named in a log record; a sandbox from a snapshot stops at its first call",
  async () => {
    const snap = testguest({}).snapshot(); // Initialise snapshot: the first run is init
    const records: string[] = [];
    let run: ReturnType<typeof startScript> | undefined;
    setLogger((r) => {
      records.push(r.message);
      const m = /waiting for gdb on 127\.0\.0\.1:(\d+)/.exec(r.message);
      if (m !== null && run === undefined) run = startScript(Number(m[1]), [{ send: "?" }, { send: "D" }]);
    });
    try {
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns(), { gdbPort: 0 });
      assert.equal(sbx.call("EchoI32", 1), 1);
      const call = sbx.snapshot();
      const port = freePort();
      const second = startScript(port, [{ send: "?" }, { send: "D" }]);
      using fromCall = MultiUseSandbox.fromSnapshot(call, hostFns(), {
        gdbPort: port,
        guestBinaryPath: TESTGUEST_PATH,
      });
      assert.equal(fromCall.call("EchoI32", 2), 2);
      const [atDispatch] = await second.done;
      assert.equal(stopRegister(atDispatch, RIP), BigInt(symbol("sv_dispatch")), "entry of the first call");
    } finally {
      setLogger(undefined);
    }
    assert.ok(run !== undefined, records.join("\n"));
    const [atEntry] = await run.done;
    assert.equal(stopRegister(atEntry, RIP), BigInt(ELF.entry), "entry of guest init");
  },
);

vmTest("crashes write core files named by the error; coreDump writes one on demand", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const u = testguest({ coreDumpDir: dir });
    using sbx = u.evolve();
    const err = (() => {
      try {
        sbx.call("WildWrite", 0x10n);
      } catch (e) {
        return e as MemoryAccessViolationError;
      }
      assert.fail("no crash");
    })();
    assert.ok(err instanceof MemoryAccessViolationError);
    assert.match(err.coreFile!, new RegExp(`^${dir}/core\\.testguest\\.${Deno.pid}\\.\\d+$`));
    assert.ok(err.message.endsWith(`(core dumped to ${err.coreFile})`), err.message);
    assert.ok(Deno.statSync(err.coreFile!).size > 0);
    // Poisoned, it still dumps: the registers are the crash's.
    sbx.coreDump(`${dir}/again`);
    assert.ok(Deno.statSync(`${dir}/again`).isFile);

    for (
      const [fn, args, type] of [
        ["DivideByZero", [], GuestCrashedError],
        ["Abort", [1, "x"], GuestAbortedError],
        ["IllegalInstruction", [], GuestCrashedError],
      ] as const
    ) {
      using s = u.evolve();
      assert.throws(() => s.call(fn, ...args), (e: unknown) => {
        assert.ok(e instanceof type, String(e));
        assert.ok(e.coreFile !== undefined && Deno.statSync(e.coreFile).isFile, fn);
        return true;
      });
    }
    // A guest read by load() knows its path too.
    using loaded = (await UninitializedSandbox.load(TESTGUEST_PATH, { coreDumpDir: dir }, hostFns()))
      .evolve();
    assert.throws(() => loaded.call("WildWrite", 0x10n), (e: unknown) => {
      assert.ok(e instanceof MemoryAccessViolationError);
      assert.match(e.coreFile!, /\/core\.testguest\./);
      return true;
    });

    // No core for errors that are not crashes.
    using spin = testguest({ coreDumpDir: dir, maxExecutionTimeMs: 50 }).evolve();
    const before = [...Deno.readDirSync(dir)].length;
    assert.throws(() => spin.call("Spin"), /maxExecutionTimeMs/);
    assert.equal([...Deno.readDirSync(dir)].length, before);

    // A missing directory: the crash is still reported, without a core.
    using lost = testguest({ coreDumpDir: `${dir}/missing` }).evolve();
    setLogger(() => {});
    try {
      assert.throws(() => lost.call("WildWrite", 0x10n), (e: unknown) => {
        assert.ok(e instanceof MemoryAccessViolationError);
        assert.equal(e.coreFile, undefined);
        return true;
      });
    } finally {
      setLogger(undefined);
    }

    const closed = u.evolve();
    closed.close();
    assert.throws(() => closed.coreDump(`${dir}/x`), SandboxClosedError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stubVector finds the vector of every IDT stub the system area writes, from any byte of it", () => {
  const layout = computeLayout({
    imageEnd: 0x204000,
    heapSize: 0x10000,
    stackSize: 0x10000,
    inputDataSize: 0x4000,
    outputDataSize: 0x4000,
  });
  const mem = new Uint8Array(0x200000);
  writeSystemArea(mem, layout, []);
  const v = new DataView(mem.buffer);
  for (let vector = 0; vector < IDT_VECTORS; vector++) {
    const gate = IDT_ADDR + vector * 16;
    const handler = v.getUint16(gate, true) | (v.getUint16(gate + 6, true) << 16);
    assert.equal(handler, STUB_ADDR + vector * STUB_SIZE);
    // The vCPU stops right after the stub's `out` to the exception port, inside the stub.
    const out = mem.subarray(handler, handler + STUB_SIZE).findIndex((b, i, a) =>
      b === 0xe7 && a[i + 1] === PORT_EXCEPTION
    );
    assert.ok(out > 0, `vector ${vector}`);
    assert.equal(stubVector(BigInt(handler + out + 2)), vector);
    assert.equal(stubVector(BigInt(handler)), vector);
    assert.equal(stubVector(BigInt(handler + STUB_SIZE - 1)), vector);
  }
  assert.equal(stubVector(BigInt(STUB_ADDR - 1)), undefined);
  assert.equal(stubVector(BigInt(STUB_ADDR + IDT_VECTORS * STUB_SIZE)), undefined);
  assert.equal(stubVector(0x200000n), undefined);
});
