/**
 * Guest misbehaviour: one test per thing a hostile or broken guest can do. After each: the error is typed
 * and says what happened (vector, address, access, code), the sandbox is poisoned exactly when the README's
 * error table says so, a poisoned sandbox refuses calls with `PoisonedSandboxError` naming the cause,
 * `restore` brings back the snapshot's state (a global counter proves it), and a fresh sandbox works.
 *
 * Guests: `testguest` (guest/README.md) and `fuzzguest` (privileged instructions, raw memory access).
 */
import assert from "node:assert/strict";
import {
  ExecutionCanceledError,
  GuestCrashedError,
  GuestError,
  HostFunctionError,
  HostFunctions,
  MemoryAccessViolationError,
  type MultiUseSandbox,
  PoisonedSandboxError,
  SandboxBusyError,
  type Snapshot,
  UninitializedSandbox,
  type Value,
} from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

const HEAP = 64 * 1024;
const OUTPUT = 8192;
const IMAGE_BASE = 0x200000n;

type Guest = "testguest" | "fuzzguest";

/** A sandbox with some state (a counter at 3) and a snapshot of that state. */
function setUp(guest: Guest, hostFunctions?: HostFunctions, config = {}) {
  const u = new UninitializedSandbox(
    guestPath(guest),
    { heapSize: HEAP, outputDataSize: OUTPUT, maxExecutionTimeMs: 2000, ...config },
    hostFunctions,
  );
  if (guest === "testguest" && !hostFunctions) {
    u.registerHostFunction(
      "Add",
      { params: ["i32", "i32"], returns: "i32" },
      (a: number, b: number) => a + b,
    );
  }
  const sbx = u.evolve();
  for (let i = 0; i < 3; i++) bump(sbx, guest);
  const snap = sbx.snapshot();
  return { u, sbx, snap };
}

/** Moves the guest's counter on by one and returns it. */
function bump(sbx: MultiUseSandbox, guest: Guest): number {
  return (guest === "fuzzguest" ? sbx.call("Counter") : sbx.call("AddToStatic", 1)) as number;
}

/**
 * Runs `fn(args)` on a fresh set-up sandbox, hands the error to `check`, then verifies poisoning, restore
 * and a fresh sandbox.
 */
function misbehave(
  guest: Guest,
  fn: string,
  args: Value[],
  poisons: boolean,
  check: (e: unknown, sbx: MultiUseSandbox) => void,
  options: { hostFunctions?: HostFunctions; config?: Record<string, unknown> } = {},
): void {
  const { u, sbx, snap } = setUp(guest, options.hostFunctions, options.config);
  try {
    bump(sbx, guest); // counter 4: restore must take it back to 3
    let error: unknown;
    try {
      sbx.call(fn, ...args);
    } catch (e) {
      error = e;
    }
    assert.ok(error !== undefined, `${fn} returned instead of failing`);
    assert.ok(error instanceof Error && error.message.length > 0, `${fn}: not a typed error: ${error}`);
    check(error, sbx);
    assert.equal(
      sbx.poisoned,
      poisons,
      `${fn}: ${(error as Error).name} should ${poisons ? "" : "not "}poison`,
    );
    if (poisons) {
      assert.throws(() => sbx.call(guest === "fuzzguest" ? "Counter" : "GetStatic"), (e) => {
        assert.ok(e instanceof PoisonedSandboxError);
        assert.equal(e.cause, error);
        assert.match(e.message, new RegExp((error as Error).name));
        return true;
      });
      assert.throws(() => sbx.snapshot(), PoisonedSandboxError);
    }
    sbx.restore(snap);
    assert.equal(sbx.poisoned, false);
    assert.equal(bump(sbx, guest), 4, `${fn}: restore did not bring the snapshot's state back`);
    sbx.restore(snap);
    assert.equal(bump(sbx, guest), 4);
    using fresh = u.evolve();
    assert.equal(bump(fresh, guest), 1, `${fn}: a fresh sandbox does not work`);
  } finally {
    sbx.close();
    snap.close();
  }
}

function crashed(vector: number, extra: (e: GuestCrashedError) => void = () => {}) {
  return (e: unknown) => {
    assert.ok(e instanceof GuestCrashedError, `expected GuestCrashedError, got ${e}`);
    assert.equal(e.name, "GuestCrashedError");
    assert.equal(e.vector, vector, e.message);
    assert.ok(e.rip !== undefined && e.rip >= IMAGE_BASE && e.rip < IMAGE_BASE + 0x100000n, `rip ${e.rip}`);
    extra(e);
  };
}

function violation(access: "read" | "write" | "execute", address: bigint | (() => bigint), detail: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof MemoryAccessViolationError, `expected MemoryAccessViolationError, got ${e}`);
    assert.equal(e.access, access, e.message);
    assert.equal(e.address, typeof address === "function" ? address() : address, e.message);
    assert.match(e.message, detail);
  };
}

/** An address from a fresh fuzzguest (code, rodata, heap). */
function addressOf(fn: "CodeAddr" | "RodataAddr" | "HeapAddr"): bigint {
  using sbx = new UninitializedSandbox(guestPath("fuzzguest"), { heapSize: HEAP }).evolve();
  return sbx.call(fn) as bigint;
}

// ---- runaway code -----------------------------------------------------------------------------------------

vmTest("infinite loop: canceled by maxExecutionTimeMs, poisoned, restored", () => {
  misbehave("testguest", "Spin", [], true, (e) => {
    assert.ok(e instanceof ExecutionCanceledError);
    assert.equal(e.reason, "timeout");
    assert.match(e.message, /Spin/);
  }, { config: { maxExecutionTimeMs: 30 } });
});

vmTest("deep recursion runs into the guard page: stack overflow, poisoned, restored", () => {
  misbehave("testguest", "StackOverflow", [100_000], true, (e) => {
    assert.ok(e instanceof GuestCrashedError, String(e));
    assert.equal(e.vector, 14);
    assert.match(e.message, /stack overflow/);
    assert.ok(e.cr2 !== undefined && e.rip !== undefined);
  });
});

vmTest("recursion that fits the stack is fine", () => {
  const { sbx, snap } = setUp("testguest");
  assert.equal(sbx.call("StackOverflow", 8), 8);
  assert.equal(sbx.poisoned, false);
  sbx.close();
  snap.close();
});

// ---- memory -----------------------------------------------------------------------------------------------

vmTest("write to the guest's own code: protected page, poisoned, restored", () => {
  const code = addressOf("CodeAddr");
  misbehave("fuzzguest", "Poke", [code, 0xcc], true, violation("write", code, /page is protected/));
});

vmTest("write to read-only data: protected page", () => {
  const ro = addressOf("RodataAddr");
  misbehave("fuzzguest", "Poke", [ro, 1], true, violation("write", ro, /page is protected/));
});

vmTest("writes and reads of supervisor pages (GDT/TSS/IDT, stubs, exception stack) are refused", () => {
  for (const addr of [0x1000n, 0x1100n, 0x1800n, 0x2000n, 0x3000n, 0x4ff8n]) {
    misbehave("fuzzguest", "Poke", [addr, 0], true, violation("write", addr, /page is protected/));
    misbehave("fuzzguest", "Peek", [addr], true, violation("read", addr, /page is protected/));
  }
});

vmTest("page tables and the function table are not mapped for the guest", () => {
  for (const addr of [0x5000n, 0x6000n, 0x7000n, 0x8000n, 0x1e0000n]) {
    misbehave("fuzzguest", "Peek", [addr], true, violation("read", addr, /not mapped/));
    misbehave("fuzzguest", "Poke", [addr, 0xff], true, violation("write", addr, /not mapped/));
  }
});

vmTest("reads and writes of unmapped addresses: null page, past the end of guest memory", () => {
  for (const addr of [0n, 8n, 0xfffn, 0x3ffff000n, 0x40000000n, 0x7fff_ffff_f000n]) {
    misbehave("fuzzguest", "Peek", [addr], true, violation("read", addr, /not mapped/));
    misbehave("fuzzguest", "Poke", [addr, 1], true, violation("write", addr, /not mapped/));
  }
});

vmTest("non-canonical addresses raise #GP", () => {
  for (const addr of [0x8000_0000_0000n, 0xdead_0000_0000_0000n]) {
    misbehave("fuzzguest", "Peek", [addr], true, crashed(13));
    misbehave("fuzzguest", "Poke", [addr, 1], true, crashed(13));
  }
});

vmTest("executing data, heap, supervisor or unmapped memory is refused", () => {
  const heap = addressOf("HeapAddr"), ro = addressOf("RodataAddr");
  misbehave("fuzzguest", "Jump", [heap], true, violation("execute", heap, /page is protected/));
  misbehave("fuzzguest", "Jump", [ro], true, violation("execute", ro, /page is protected/));
  misbehave("fuzzguest", "Jump", [0x2000n], true, violation("execute", 0x2000n, /page is protected/));
  misbehave("fuzzguest", "Jump", [0n], true, violation("execute", 0n, /not mapped/));
});

vmTest(
  "a fault with a broken stack pointer is still reported (the CPU switches to the exception stack)",
  () => {
    misbehave(
      "fuzzguest",
      "SetRspAndPush",
      [0n],
      true,
      violation("write", 0xffff_ffff_ffff_fff8n, /not mapped/),
    );
    misbehave(
      "fuzzguest",
      "SetRspAndPush",
      [0x2000n],
      true,
      violation("write", 0x1ff8n, /page is protected/),
    );
  },
);

// ---- instructions -----------------------------------------------------------------------------------------

vmTest("privileged instructions (hlt, cli, mov cr3, lgdt, wrmsr, ...) raise #GP", () => {
  for (const fn of ["Hlt", "Cli", "MovCr3", "Lgdt", "Wrmsr", "Sti", "MovCr0", "ReadCr3", "Lidt", "Rdmsr"]) {
    misbehave("fuzzguest", fn, [], true, crashed(13, (e) => assert.equal(e.errorCode, 0n)));
  }
  for (const fn of ["Invd", "Invlpg", "Ltr", "Rdpmc"]) misbehave("fuzzguest", fn, [], true, crashed(13));
});

vmTest("loading a kernel selector (mov ss, far return to CPL0) raises #GP with the selector", () => {
  misbehave("fuzzguest", "MovSs", [], true, crashed(13, (e) => assert.equal(e.errorCode, 0x10n)));
  misbehave("fuzzguest", "LretKernel", [], true, crashed(13, (e) => assert.equal(e.errorCode, 0x8n)));
});

vmTest("int3 is a breakpoint crash", () => {
  misbehave("fuzzguest", "Int3", [], true, crashed(3, (e) => assert.match(e.message, /breakpoint/)));
});

vmTest("ud2 (and the testguest's IllegalInstruction) is #UD", () => {
  misbehave("fuzzguest", "Ud2", [], true, crashed(6, (e) => assert.match(e.message, /#UD/)));
  misbehave("testguest", "IllegalInstruction", [], true, crashed(6));
});

vmTest("divide by zero is #DE", () => {
  misbehave("testguest", "DivideByZero", [], true, crashed(0, (e) => assert.match(e.message, /#DE/)));
});

vmTest("other CPU exceptions: icebp and single-step (#DB), alignment check (#AC), SIMD (#XM)", () => {
  misbehave("fuzzguest", "Int1", [], true, crashed(1));
  misbehave("fuzzguest", "SingleStep", [], true, crashed(1));
  misbehave("fuzzguest", "AlignmentCheck", [], true, crashed(17));
  misbehave("fuzzguest", "SimdException", [], true, crashed(19));
});

vmTest("int n to a kernel gate, sysenter: a typed crash", () => {
  for (const fn of ["Int80", "IntGp", "Sysenter"]) {
    misbehave("fuzzguest", fn, [], true, (e) => {
      assert.ok(e instanceof GuestCrashedError, String(e));
      assert.ok(e.vector === 13 || e.vector === 6, e.message); // #GP on hardware; #UD on AMD / PVM hosts
    });
  }
});

vmTest("syscall: a typed error, poisoned, restored", () => {
  // EFER.SCE is set (docs/ABI.md), so syscall enters CPL0 at LSTAR = 0, which is not mapped.
  misbehave("fuzzguest", "Syscall", [], true, (e) => {
    assert.ok(e instanceof MemoryAccessViolationError || e instanceof GuestCrashedError, String(e));
  });
  for (const rsp of [0x1100n, 0x3000n, 0n]) {
    misbehave("fuzzguest", "SyscallRsp", [rsp], true, (e) => {
      assert.ok(e instanceof MemoryAccessViolationError || e instanceof GuestCrashedError, String(e));
    });
  }
});

vmTest("vmcall from the guest is refused and changes nothing", () => {
  // Documented outcomes: hardware KVM and some PVM hosts return -KVM_EPERM in RAX for a hypercall from
  // CPL3; other PVM hosts raise #GP (vector 13) or #UD (vector 6). Both are refusals; neither may change
  // guest state beyond what restore undoes.
  const { sbx, snap } = setUp("fuzzguest");
  try {
    try {
      const r = sbx.call("Vmcall") as bigint;
      assert.equal(BigInt.asIntN(64, r) < 0n, true, `vmcall returned ${r}`);
      assert.equal(sbx.poisoned, false);
    } catch (e) {
      assert.ok(e instanceof GuestCrashedError && (e.vector === 13 || e.vector === 6), String(e));
      assert.equal(sbx.poisoned, true);
      sbx.restore(snap);
    }
    assert.equal(sbx.call("Counter"), 4);
  } finally {
    sbx.close();
    snap.close();
  }
});

vmTest("AVX: #UD where the host's CR4 applies, or runs (PVM hosts run CPL3 code natively)", () => {
  const { sbx, snap } = setUp("fuzzguest");
  try {
    try {
      sbx.call("Avx");
      assert.equal(sbx.poisoned, false);
    } catch (e) {
      crashed(6)(e);
      assert.equal(sbx.poisoned, true);
    }
    sbx.restore(snap);
    assert.equal(sbx.call("Counter"), 4);
  } finally {
    sbx.close();
    snap.close();
  }
});

// ---- host functions ---------------------------------------------------------------------------------------

vmTest("a host function that throws: HostFunctionError with the cause, not poisoned", () => {
  const boom = new RangeError("boom from the host");
  const fns = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    throw boom;
  });
  misbehave("testguest", "Add", [1, 2], false, (e) => {
    assert.ok(e instanceof HostFunctionError, String(e));
    assert.equal(e.functionName, "Add");
    assert.equal(e.cause, boom);
    assert.match(e.message, /boom from the host/);
  }, { hostFunctions: fns });
});

vmTest("a host function that re-enters its sandbox is refused with a clear error, no deadlock", () => {
  const ref: { sbx?: MultiUseSandbox; snap?: Snapshot } = {};
  const attempts: [string, () => unknown][] = [
    ["call", () => ref.sbx!.call("Echo", "inner")],
    ["snapshot", () => ref.sbx!.snapshot()],
    ["restore", () => ref.sbx!.restore(ref.snap!)],
    ["close", () => ref.sbx!.close()],
  ];
  let attempt = 0;
  const refusals: string[] = [];
  const fns = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    const [what, act] = attempts[attempt];
    try {
      act();
    } catch (e) {
      refusals.push(`${what}: ${(e as Error).message}`);
      throw e;
    }
    throw new Error(`${what} from inside a host function was not refused`);
  });
  const { sbx, snap } = setUp("testguest", fns);
  ref.sbx = sbx;
  ref.snap = snap;
  try {
    for (attempt = 0; attempt < attempts.length; attempt++) {
      assert.throws(() => sbx.call("Add", 1, 2), (e) => {
        assert.ok(e instanceof HostFunctionError, String(e));
        assert.ok(e.cause instanceof SandboxBusyError, String(e.cause));
        assert.match(
          e.cause.message,
          /busy \((called from inside one of its calls|re-entered from one of its host functions)\)/,
        );
        return true;
      });
      assert.equal(sbx.poisoned, false);
      assert.equal(sbx.call("GetStatic"), 3, `state after a refused ${attempts[attempt][0]}`);
    }
    assert.equal(refusals.length, attempts.length, refusals.join("\n"));
  } finally {
    sbx.close();
    snap.close();
  }
});

vmTest("a host function that calls another sandbox works (no global lock)", () => {
  using other = new UninitializedSandbox(guestPath("testguest")).evolve();
  const fns = new HostFunctions().register(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    (a: number, b: number) => (other.call("EchoI32", a) as number) + b,
  );
  const { sbx, snap } = setUp("testguest", fns);
  try {
    assert.equal(sbx.call("Add", 40, 2), 42);
  } finally {
    sbx.close();
    snap.close();
  }
});

// ---- resources --------------------------------------------------------------------------------------------

vmTest("heap exhaustion: GuestError code 4, not poisoned, restore frees the heap", () => {
  misbehave("testguest", "Malloc", [BigInt(HEAP) * 2n], false, (e) => {
    assert.ok(e instanceof GuestError, String(e));
    assert.equal(e.code, 4);
  });
  // Exhaust it step by step, then restore: the heap is back.
  const { sbx, snap } = setUp("testguest");
  try {
    let n = 0;
    for (;;) {
      try {
        sbx.call("Malloc", 4096n);
        n++;
      } catch (e) {
        assert.ok(e instanceof GuestError && e.code === 4, String(e));
        break;
      }
    }
    assert.ok(n > 4 && n <= HEAP / 4096, `${n} allocations`);
    sbx.restore(snap);
    assert.equal(typeof sbx.call("Malloc", 4096n), "bigint");
  } finally {
    sbx.close();
    snap.close();
  }
});

vmTest("output larger than the buffer: GuestError code 5, not poisoned", () => {
  misbehave("testguest", "ReturnLarge", [OUTPUT], false, (e) => {
    assert.ok(e instanceof GuestError, String(e));
    assert.equal(e.code, 5);
  });
  misbehave("testguest", "ReturnLarge", [0xffffffff], false, (e) => {
    assert.ok(e instanceof GuestError && e.code === 5, String(e));
  });
});

vmTest("a host call larger than the output buffer fails in the guest, not the host", () => {
  misbehave("testguest", "PrintOutput", ["x".repeat(OUTPUT)], false, (e) => {
    assert.ok(e instanceof GuestError, String(e));
  });
});

vmTest("a host function error message larger than the output buffer is cut, not overflowing", () => {
  const long = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    throw new Error("e".repeat(OUTPUT * 4));
  });
  misbehave("testguest", "Add", [1, 1], false, (e) => {
    assert.ok(e instanceof HostFunctionError, String(e));
    assert.equal((e.cause as Error).message.length, OUTPUT * 4);
  }, { hostFunctions: long });
});

// ---- port I/O outside the ABI -----------------------------------------------------------------------------

function protocolError(port: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof GuestCrashedError, String(e));
    assert.equal(e.vector, undefined);
    assert.match(e.message, /protocol error/);
    assert.match(e.message, port);
  };
}

vmTest("out with the wrong width, or to an undefined port in the ABI's range: protocol error", () => {
  misbehave("fuzzguest", "OutWidth", [0xe0, 1], true, protocolError(/0xe0.*size 1/));
  misbehave("fuzzguest", "OutWidth", [0xe1, 2], true, protocolError(/0xe1.*size 2/));
  misbehave("fuzzguest", "OutWidth", [0xe4, 1], true, protocolError(/0xe4/));
  misbehave("fuzzguest", "OutImm", [0], true, protocolError(/0xe0/));
});

vmTest("out to ports outside the I/O bitmap raises #GP", () => {
  for (const port of [0x80, 0xef, 0xff, 0x3f8, 0xcf8, 0xffff]) {
    misbehave("fuzzguest", "OutWidth", [port, 4], true, crashed(13));
    misbehave("fuzzguest", "OutWidth", [port, 1], true, crashed(13));
  }
});

// DEFECT (reported): after an `in` exit, KVM completes the pending instruction on the next KVM_RUN and
// writes back the old RIP over the registers restore() set, so the guest resumes inside the failed call.
vmTest("in from an ABI port: protocol error, poisoned, and restore brings the sandbox back", () => {
  misbehave("fuzzguest", "InWidth", [0xe0, 4], true, protocolError(/0xe0 accessed with in\b/));
  misbehave("fuzzguest", "InWidth", [0xe3, 1], true, protocolError(/0xe3/));
});
