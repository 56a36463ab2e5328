import assert from "node:assert/strict";
import {
  GuestFunctionNotFoundError,
  HostFunctionError,
  SandboxClosedError,
  UninitializedSandbox,
} from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

function testguest(config = {}) {
  const u = new UninitializedSandbox(guestPath("testguest"), config);
  u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b);
  return u;
}

vmTest("Echo returns its string argument", () => {
  using sbx = testguest().evolve();
  assert.equal(sbx.call("Echo", "hello"), "hello");
  assert.equal(sbx.call("Echo", ""), "");
  assert.equal(sbx.call("Echo", "héllo wörld ✓ 🎉"), "héllo wörld ✓ 🎉");
});

vmTest("every value type round-trips", () => {
  using sbx = testguest().evolve();
  for (const v of [0, 1, -1, 2 ** 31 - 1, -(2 ** 31)]) assert.equal(sbx.call("EchoI32", v), v);
  for (const v of [0, 1, 2 ** 32 - 1]) assert.equal(sbx.call("EchoU32", v), v);
  for (const v of [0n, -1n, (1n << 63n) - 1n, -(1n << 63n)]) assert.equal(sbx.call("EchoI64", v), v);
  for (const v of [0n, (1n << 64n) - 1n]) assert.equal(sbx.call("EchoU64", v), v);
  for (const v of [0, 1.5, -2.25, Infinity]) assert.equal(sbx.call("EchoF32", v), v);
  assert.equal(sbx.call("EchoF32", 0.1), Math.fround(0.1));
  for (const v of [0, Math.PI, -1e300, Number.MIN_VALUE]) assert.equal(sbx.call("EchoF64", v), v);
  assert.ok(Number.isNaN(sbx.call("EchoF64", NaN)));
  assert.equal(sbx.call("EchoBool", true), true);
  assert.equal(sbx.call("EchoBool", false), false);
  const bytes = new Uint8Array(1000).map((_, i) => i * 7);
  assert.deepEqual(sbx.call("EchoBytes", bytes), bytes);
  assert.deepEqual(sbx.call("EchoBytes", new Uint8Array(0)), new Uint8Array(0));
  assert.equal(sbx.call("Nothing"), undefined);
});

vmTest("guestFunctions lists the guest's registrations", () => {
  using sbx = testguest().evolve();
  const fns = sbx.guestFunctions();
  const echo = fns.find((f) => f.name === "Echo");
  assert.deepEqual(echo, { name: "Echo", params: ["string"], returns: "string" });
  assert.deepEqual(fns.find((f) => f.name === "Add"), {
    name: "Add",
    params: ["i32", "i32"],
    returns: "i32",
  });
  assert.ok(fns.length >= 25);
});

vmTest("Add calls the host's Add", () => {
  using sbx = testguest().evolve();
  assert.equal(sbx.call("Add", 2, 3), 5);
  assert.equal(sbx.call("Add", -10, 4), -6);
});

vmTest("guest global state persists across calls", () => {
  using sbx = testguest().evolve();
  assert.equal(sbx.call("GetStatic"), 0);
  assert.equal(sbx.call("AddToStatic", 5), 5);
  assert.equal(sbx.call("AddToStatic", 7), 12);
  assert.equal(sbx.call("GetStatic"), 12);
  using other = testguest().evolve();
  assert.equal(other.call("GetStatic"), 0);
});

vmTest("PrintOutput reaches registerPrint", () => {
  const printed: string[] = [];
  using sbx = testguest().registerPrint((t) => void printed.push(t)).evolve();
  assert.equal(sbx.call("PrintOutput", "hi there\n"), 9);
  assert.deepEqual(printed, ["hi there\n"]);
});

vmTest("arguments are checked against the guest signature before the guest runs", () => {
  using sbx = testguest().evolve();
  assert.throws(() => sbx.call("Echo"), { name: "TypeError", message: /Echo takes 1 argument/ });
  assert.throws(() => sbx.call("Echo", 1), {
    name: "TypeError",
    message: /Echo parameter 0: expected a string/,
  });
  assert.throws(() => sbx.call("EchoI32", 2 ** 31), { name: "RangeError", message: /EchoI32 parameter 0/ });
  assert.throws(() => sbx.call("EchoU32", -1), RangeError);
  assert.throws(() => sbx.call("EchoI32", 1.5), TypeError);
  assert.throws(() => sbx.call("EchoU64", 1), { name: "TypeError", message: /expected a bigint/ });
  assert.throws(() => sbx.call("EchoU64", -1n), RangeError);
  assert.throws(() => sbx.call("EchoI64", 1n << 63n), RangeError);
  assert.throws(() => sbx.call("EchoBool", 1), TypeError);
  assert.throws(() => sbx.call("EchoBytes", [1, 2]), TypeError);
  assert.throws(() => sbx.call("NoSuchFunction"), GuestFunctionNotFoundError);
  assert.equal(sbx.call("Echo", "still usable"), "still usable");
});

vmTest("arguments and results up to the buffer limits", () => {
  using sbx = testguest({ inputDataSize: 64 * 1024, outputDataSize: 64 * 1024 }).evolve();
  const big = new Uint8Array(60 * 1024).map((_, i) => i);
  assert.deepEqual(sbx.call("EchoBytes", big), big);
  const large = sbx.call("ReturnLarge", 60 * 1024) as Uint8Array;
  assert.equal(large.length, 60 * 1024);
  assert.equal(large[1000], 1000 & 0xff);
  assert.throws(() => sbx.call("EchoBytes", new Uint8Array(65 * 1024)), {
    name: "RangeError",
    message: /do not fit the 65536-byte input buffer/,
  });
  assert.throws(() => sbx.call("ReturnLarge", 65 * 1024), { name: "GuestError", code: 5 });
  assert.equal(sbx.call("Echo", "usable"), "usable");
});

vmTest("host function that throws gives HostFunctionError and does not poison", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    throw new Error("host exploded");
  });
  using sbx = u.evolve();
  const err = assert.throws(() => sbx.call("Add", 1, 2), (e: unknown) => {
    assert.ok(e instanceof HostFunctionError);
    assert.equal(e.name, "HostFunctionError");
    assert.match(e.message, /host exploded/);
    assert.equal((e.cause as Error).message, "host exploded");
    return true;
  });
  void err;
  assert.equal(sbx.poisoned, false);
  assert.equal(sbx.call("Echo", "ok"), "ok");
});

vmTest("a missing host function is an error the guest sees", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  using sbx = u.evolve();
  assert.throws(() => sbx.call("Add", 1, 2), {
    name: "GuestError",
    code: 2,
    message: /Add is not registered/,
  });
  assert.equal(sbx.call("Echo", "ok"), "ok");
});

vmTest("a host function returning the wrong type is a HostFunctionError", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, () => "nope");
  using sbx = u.evolve();
  assert.throws(() => sbx.call("Add", 1, 2), { name: "HostFunctionError", message: /returned a bad value/ });
});

vmTest("calling a closed sandbox throws SandboxClosedError; close twice is fine", () => {
  const sbx = testguest().evolve();
  sbx.close();
  sbx.close();
  assert.throws(() => sbx.call("Echo", "x"), SandboxClosedError);
});

vmTest("re-entering the sandbox from a host function is refused", () => {
  const u = new UninitializedSandbox(guestPath("testguest"));
  // deno-lint-ignore prefer-const
  let sbx: ReturnType<typeof u.evolve>;
  u.registerHostFunction(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    () => sbx.call("Echo", "x") as number,
  );
  sbx = u.evolve();
  assert.throws(() => sbx.call("Add", 1, 2), {
    name: "HostFunctionError",
    message: /busy \(re-entered from one of its host functions\)/,
  });
  assert.equal(sbx.call("Echo", "fine"), "fine");
  sbx.close();
});

vmTest("Malloc works until the heap is exhausted", () => {
  using sbx = testguest({ heapSize: 256 * 1024 }).evolve();
  const a = sbx.call("Malloc", 4096n) as bigint;
  assert.ok(a > 0n);
  assert.throws(() => sbx.call("Malloc", 1n << 20n), { name: "GuestError", code: 4 });
  sbx.call("Free", a);
  assert.ok((sbx.call("Malloc", 100n * 1024n) as bigint) > 0n);
});

vmTest("guest errors carry code and message and do not poison", () => {
  using sbx = testguest().evolve();
  assert.throws(() => sbx.call("Fail", 123, "custom failure"), {
    name: "GuestError",
    code: 123,
    guestMessage: "custom failure",
  });
  assert.equal(sbx.call("Echo", "ok"), "ok");
});

vmTest("guest log records reach the logger at or above guestLogLevel", async () => {
  const { setLogger } = await import("../../mod.ts");
  const records: { level: string; message: string }[] = [];
  setLogger((r) => void records.push(r));
  try {
    using sbx = testguest({ guestLogLevel: "info" }).evolve();
    sbx.call("LogMessage", 1, "debug message");
    sbx.call("LogMessage", 3, "warn message");
    assert.deepEqual(
      records.filter((r) => r.message.endsWith("message")).map((r) => [r.level, r.message]),
      [[
          "warn",
          "warn message",
        ]].length === 1
        ? [["warn", "warn message"]]
        : [],
    );
  } finally {
    setLogger(undefined);
  }
});

vmTest("fn<P, R>() gives a typed function: no casts, the same checks as call()", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest")).evolve();
  const echo = sbx.fn<[string], string>("Echo");
  const text: string = echo("typed");
  assert.equal(text, "typed");
  const add = sbx.fn<[number, number], number>("Add");
  assert.throws(() => add(1, 2), { name: "GuestError" }); // the guest calls the host's Add: not registered
  const wrong = sbx.fn<[number], string>("Echo");
  assert.throws(() => wrong(1), TypeError);
  assert.throws(() => sbx.fn("NoSuchFunction"), { name: "GuestFunctionNotFoundError" });
});

vmTest("UninitializedSandbox.load reads a guest from a path, a file: URL or over HTTP", async () => {
  const path = guestPath("hello");
  const bytes = Deno.readFileSync(path);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response(bytes));
  try {
    const remote = new URL(`http://127.0.0.1:${server.addr.port}/hello`);
    for (const guest of [path, new URL(`file://${path}`), remote]) {
      const u = await UninitializedSandbox.load(guest);
      using sbx = u.evolve();
      assert.equal(sbx.call("Hello", "load"), "Hello, load!");
      assert.equal(u.binaryPath, guest === remote ? undefined : path);
    }
    assert.throws(() => new UninitializedSandbox(remote), /UninitializedSandbox\.load/);
  } finally {
    await server.shutdown();
  }
});
