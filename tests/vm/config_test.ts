import assert from "node:assert/strict";
import { resolveConfiguration } from "../../vm/config.ts";

Deno.test("defaults are documented values", () => {
  const c = resolveConfiguration();
  assert.equal(c.heapSize, 128 * 1024);
  assert.equal(c.inputDataSize, 16 * 1024);
  assert.equal(c.outputDataSize, 16 * 1024);
  assert.equal(c.stackSize, 64 * 1024);
  assert.equal(c.maxExecutionTimeMs, 1000);
  assert.equal(c.guestLogLevel, "warn");
  assert.equal(c.guestInitArg, 0n);
});

Deno.test("sizes are rounded up to pages", () => {
  assert.equal(resolveConfiguration({ heapSize: 5000 }).heapSize, 8192);
});

Deno.test("out-of-range and mistyped fields name the field and the range", () => {
  assert.throws(() => resolveConfiguration({ heapSize: 1 }), {
    name: "RangeError",
    message: "SandboxConfiguration.heapSize is 1, allowed range is 4096 to 536870912",
  });
  assert.throws(() => resolveConfiguration({ stackSize: 1 << 30 }), {
    name: "RangeError",
    message: /stackSize/,
  });
  assert.throws(() => resolveConfiguration({ inputDataSize: 0 }), {
    name: "RangeError",
    message: /inputDataSize/,
  });
  assert.throws(() => resolveConfiguration({ outputDataSize: -5 }), {
    name: "RangeError",
    message: /outputDataSize/,
  });
  assert.throws(() => resolveConfiguration({ maxExecutionTimeMs: -1 }), /maxExecutionTimeMs/);
  assert.throws(() => resolveConfiguration({ heapSize: "big" as unknown as number }), {
    name: "TypeError",
    message: /heapSize must be an integer/,
  });
  assert.throws(() => resolveConfiguration({ guestLogLevel: "loud" as "warn" }), /guestLogLevel/);
  assert.throws(() => resolveConfiguration({ guestInitArg: -1n }), /guestInitArg/);
});

Deno.test("debugging fields: off by default, checked when given", () => {
  const c = resolveConfiguration();
  assert.equal(c.gdbPort, undefined);
  assert.equal(c.coreDumpDir, undefined);
  assert.equal(c.guestBinaryPath, undefined);
  const on = resolveConfiguration({ gdbPort: 0, coreDumpDir: "/tmp/cores", guestBinaryPath: "guest.elf" });
  assert.deepEqual([on.gdbPort, on.coreDumpDir, on.guestBinaryPath], [0, "/tmp/cores", "guest.elf"]);
  assert.equal(resolveConfiguration({ gdbPort: 65535 }).gdbPort, 65535);
  assert.throws(() => resolveConfiguration({ gdbPort: 65536 }), {
    name: "RangeError",
    message: "SandboxConfiguration.gdbPort is 65536, allowed range is 0 to 65535",
  });
  assert.throws(() => resolveConfiguration({ gdbPort: -1 }), {
    name: "RangeError",
    message: /gdbPort is -1/,
  });
  assert.throws(() => resolveConfiguration({ gdbPort: 1.5 }), {
    name: "TypeError",
    message: "SandboxConfiguration.gdbPort must be an integer, got 1.5",
  });
  assert.throws(() => resolveConfiguration({ gdbPort: "1234" as unknown as number }), { name: "TypeError" });
  assert.throws(() => resolveConfiguration({ coreDumpDir: "" }), {
    name: "TypeError",
    message: "SandboxConfiguration.coreDumpDir must be a non-empty path string, got ",
  });
  assert.throws(() => resolveConfiguration({ guestBinaryPath: 5 as unknown as string }), {
    name: "TypeError",
    message: /guestBinaryPath must be a non-empty path string, got 5/,
  });
});

Deno.test("hot: off by default, true for the default idle spin, or an object checked like the rest", () => {
  assert.equal(resolveConfiguration().hot, undefined);
  assert.equal(resolveConfiguration({ hot: false }).hot, undefined);
  assert.deepEqual(resolveConfiguration({ hot: true }).hot, { idleSpinMs: 2 });
  assert.deepEqual(resolveConfiguration({ hot: {} }).hot, { idleSpinMs: 2 });
  assert.deepEqual(resolveConfiguration({ hot: { idleSpinMs: 0.5 } }).hot, { idleSpinMs: 0.5 });
  assert.throws(() => resolveConfiguration({ hot: { idleSpinMs: -1 } }), {
    name: "RangeError",
    message: "SandboxConfiguration.hot.idleSpinMs is -1, allowed range is 0 to 10000",
  });
  assert.throws(() => resolveConfiguration({ hot: { idleSpinMs: NaN } }), { name: "TypeError" });
  assert.throws(() => resolveConfiguration({ hot: "yes" as unknown as boolean }), {
    name: "TypeError",
    message: /hot must be a boolean or an object/,
  });
});
