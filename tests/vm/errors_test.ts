import assert from "node:assert/strict";
import {
  GuestAbortedError,
  GuestCrashedError,
  MemoryAccessViolationError,
  type MultiUseSandbox,
  PoisonedSandboxError,
  UninitializedSandbox,
} from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

function sandbox(config = {}): MultiUseSandbox {
  return new UninitializedSandbox(guestPath("testguest"), config).evolve();
}

/** Runs `provoke`, checks the error, checks the sandbox is poisoned, and that a fresh sandbox works. */
function expectPoisoning(provoke: (s: MultiUseSandbox) => unknown, check: (e: unknown) => void): void {
  using sbx = sandbox();
  let caught: unknown;
  try {
    provoke(sbx);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, "expected an error");
  check(caught);
  assert.equal(sbx.poisoned, true);
  assert.throws(() => sbx.call("Echo", "x"), (e: unknown) => {
    assert.ok(e instanceof PoisonedSandboxError);
    assert.equal(e.name, "PoisonedSandboxError");
    assert.equal(e.cause, caught);
    return true;
  });
  using fresh = sandbox();
  assert.equal(fresh.call("Echo", "healthy"), "healthy");
}

vmTest("Abort gives GuestAbortedError with code and message", () => {
  expectPoisoning((s) => s.call("Abort", 42, "guest gave up"), (e) => {
    assert.ok(e instanceof GuestAbortedError);
    assert.equal(e.name, "GuestAbortedError");
    assert.equal(e.code, 42);
    assert.equal(e.guestMessage, "guest gave up");
  });
});

vmTest("a write to an unmapped address is a MemoryAccessViolationError with the address", () => {
  expectPoisoning((s) => s.call("WildWrite", 0x3000_0000n), (e) => {
    assert.ok(e instanceof MemoryAccessViolationError);
    assert.equal(e.name, "MemoryAccessViolationError");
    assert.equal(e.address, 0x3000_0000n);
    assert.equal(e.access, "write");
    assert.match(e.message, /0x30000000/);
  });
});

vmTest("a null read is a MemoryAccessViolationError", () => {
  expectPoisoning((s) => s.call("ReadAddr", 8n), (e) => {
    assert.ok(e instanceof MemoryAccessViolationError);
    assert.equal(e.address, 8n);
    assert.equal(e.access, "read");
  });
});

vmTest("a write to guest code (read-only) is a MemoryAccessViolationError", () => {
  expectPoisoning((s) => s.call("WildWrite", 0x200000n), (e) => {
    assert.ok(e instanceof MemoryAccessViolationError);
    assert.equal(e.address, 0x200000n);
    assert.equal(e.access, "write");
    assert.match(e.message, /protected/);
  });
});

vmTest("the guest cannot read or write its page tables and descriptor tables", () => {
  for (const addr of [0x1000n, 0x2000n, 0x5000n, 0x8000n]) {
    expectPoisoning((s) => s.call("WildWrite", addr), (e) => {
      assert.ok(e instanceof MemoryAccessViolationError, String(e));
      assert.equal(e.address, addr);
    });
    expectPoisoning((s) => s.call("ReadAddr", addr), (e) => {
      assert.ok(e instanceof MemoryAccessViolationError, String(e));
    });
  }
});

vmTest("divide by zero is a GuestCrashedError with vector 0 and RIP", () => {
  expectPoisoning((s) => s.call("DivideByZero"), (e) => {
    assert.ok(e instanceof GuestCrashedError);
    assert.equal(e.name, "GuestCrashedError");
    assert.equal(e.vector, 0);
    assert.ok(e.rip !== undefined && e.rip >= 0x200000n);
  });
});

vmTest("ud2 is a GuestCrashedError with vector 6", () => {
  expectPoisoning((s) => s.call("IllegalInstruction"), (e) => {
    assert.ok(e instanceof GuestCrashedError);
    assert.equal(e.vector, 6);
  });
});

vmTest("stack overflow hits the guard page: GuestCrashedError with vector 14 and CR2", () => {
  expectPoisoning((s) => s.call("StackOverflow", 100000), (e) => {
    assert.ok(e instanceof GuestCrashedError, String(e));
    assert.equal(e.vector, 14);
    assert.ok(e.cr2 !== undefined);
    assert.match(e.message, /stack overflow/);
  });
});

vmTest("moderate recursion within the stack works", () => {
  using sbx = sandbox();
  assert.equal(typeof sbx.call("StackOverflow", 4), "number");
});
