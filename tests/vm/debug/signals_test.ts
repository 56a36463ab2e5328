import assert from "node:assert/strict";
import { GDB_SIGNAL, LINUX_SIGNAL, signalForVector } from "../../../vm/debug/signals.ts";

Deno.test("exceptions map to the signals Linux sends for them", () => {
  const expected: Record<number, string> = {
    0: "SIGFPE",
    1: "SIGTRAP",
    3: "SIGTRAP",
    4: "SIGSEGV",
    5: "SIGSEGV",
    6: "SIGILL",
    7: "SIGFPE",
    8: "SIGSEGV",
    11: "SIGBUS",
    12: "SIGBUS",
    13: "SIGSEGV",
    14: "SIGSEGV",
    16: "SIGFPE",
    17: "SIGBUS",
    19: "SIGFPE",
    21: "SIGSEGV",
  };
  for (const [vector, signal] of Object.entries(expected)) {
    assert.equal(signalForVector(Number(vector)), signal, vector);
  }
});

Deno.test("gdb and Linux number signals alike except SIGBUS", () => {
  for (const name of Object.keys(GDB_SIGNAL) as (keyof typeof GDB_SIGNAL)[]) {
    if (name === "SIGBUS") continue;
    assert.equal(GDB_SIGNAL[name], LINUX_SIGNAL[name], name);
  }
  assert.equal(GDB_SIGNAL.SIGBUS, 10); // GDB_SIGNAL_BUS in gdb/signals.def
  assert.equal(LINUX_SIGNAL.SIGBUS, 7); // <asm/signal.h> on x86-64
});
