import assert from "node:assert/strict";
import {
  formatCount,
  formatSize,
  formatValue,
  parseArgs,
  parseCallArgs,
  parseSize,
  parseValue,
} from "../../cli/_args.ts";
import { UsageError } from "../../cli/_errors.ts";

Deno.test("parseSize: bytes and k/m/g suffixes", () => {
  assert.equal(parseSize("4096", "--heap"), 4096);
  assert.equal(parseSize("64k", "--heap"), 64 * 1024);
  assert.equal(parseSize("64K", "--heap"), 64 * 1024);
  assert.equal(parseSize("64KiB", "--heap"), 64 * 1024);
  assert.equal(parseSize("256m", "--heap"), 256 * 1024 * 1024);
  assert.equal(parseSize("1g", "--heap"), 1024 ** 3);
  for (const bad of ["", "k", "1.5m", "-1", "12q", "1 t"]) {
    assert.throws(() => parseSize(bad, "--heap"), UsageError, bad);
  }
});

Deno.test("formatSize", () => {
  assert.equal(formatSize(512), "512 B");
  assert.equal(formatSize(128 * 1024), "128 KiB");
  assert.equal(formatSize(2265088), "2.2 MiB");
});

Deno.test("formatCount", () => {
  assert.equal(formatCount(1, "page"), "1 page");
  assert.equal(formatCount(0, "run"), "0 runs");
  assert.equal(formatCount(2, "warm-up call"), "2 warm-up calls");
});

Deno.test("parseArgs: flags, values, --x=y, negative numbers, --, calls", () => {
  const spec = { "-o": "value", "--json": "flag", "--call": "call", "--heap": "value" } as const;
  const a = parseArgs(
    ["g.elf", "-o", "out.hls", "--heap=1m", "--call", "Add", "1", "-2", "--call", "Nothing", "--json"],
    spec,
    "snapshot",
  );
  assert.deepEqual(a.positionals, ["g.elf"]);
  assert.equal(a.options.get("-o"), "out.hls");
  assert.equal(a.options.get("--heap"), "1m");
  assert.equal(a.options.get("--json"), true);
  assert.deepEqual(a.calls, [{ name: "Add", args: ["1", "-2"] }, { name: "Nothing", args: [] }]);

  const b = parseArgs(["f", "Echo", "--", "--not-an-option", "-x"], spec, "run");
  assert.deepEqual(b.positionals, ["f", "Echo", "--not-an-option", "-x"]);
  assert.deepEqual(parseArgs(["-1.5", "-inf", "-"], spec, "run").positionals, ["-1.5", "-inf", "-"]);

  assert.throws(() => parseArgs(["--nope"], spec, "run"), /unknown option --nope/);
  assert.throws(() => parseArgs(["-o"], spec, "run"), /-o needs a value/);
  assert.throws(() => parseArgs(["--json=1"], spec, "run"), /takes no value/);
  assert.throws(() => parseArgs(["--call"], spec, "run"), /needs a function name/);
});

Deno.test("parseValue: integers with ranges, hex and sign", async () => {
  assert.equal(await parseValue("-5", "i32", "a"), -5);
  assert.equal(await parseValue("0xff", "u32", "a"), 255);
  assert.equal(await parseValue("2147483647", "i32", "a"), 2147483647);
  await assert.rejects(
    () => parseValue("2147483648", "i32", "a"),
    /allowed range is -2147483648 to 2147483647/,
  );
  await assert.rejects(() => parseValue("-1", "u32", "a"), UsageError);
  assert.equal(await parseValue("18446744073709551615", "u64", "a"), (1n << 64n) - 1n);
  assert.equal(await parseValue("-9223372036854775808", "i64", "a"), -(1n << 63n));
  await assert.rejects(() => parseValue("18446744073709551616", "u64", "a"), UsageError);
  await assert.rejects(() => parseValue("1.5", "i64", "a"), /expected an integer/);
  await assert.rejects(() => parseValue("", "i32", "a"), UsageError);
});

Deno.test("parseValue: floats, bools, strings", async () => {
  assert.equal(await parseValue("1.5", "f64", "a"), 1.5);
  assert.equal(await parseValue("-2e3", "f32", "a"), -2000);
  assert.equal(await parseValue(".5", "f64", "a"), 0.5);
  assert.equal(await parseValue("-inf", "f64", "a"), -Infinity);
  assert.ok(Number.isNaN(await parseValue("nan", "f64", "a")));
  await assert.rejects(() => parseValue("1.5x", "f64", "a"), /expected a number/);
  await assert.rejects(() => parseValue("", "f64", "a"), UsageError);
  assert.equal(await parseValue("true", "bool", "a"), true);
  assert.equal(await parseValue("0", "bool", "a"), false);
  await assert.rejects(() => parseValue("yes", "bool", "a"), /expected true or false/);
  assert.equal(await parseValue("-x y", "string", "a"), "-x y");
});

Deno.test("parseValue: bytes as hex or @file", async () => {
  assert.deepEqual(await parseValue("00ff10", "bytes", "a"), new Uint8Array([0, 255, 16]));
  assert.deepEqual(await parseValue("0xABcd", "bytes", "a"), new Uint8Array([0xab, 0xcd]));
  assert.deepEqual(await parseValue("", "bytes", "a"), new Uint8Array(0));
  await assert.rejects(() => parseValue("abc", "bytes", "a"), /hex digit pairs/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/b`, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await parseValue(`@${dir}/b`, "bytes", "a"), new Uint8Array([1, 2, 3]));
    await assert.rejects(() => parseValue(`@${dir}/missing`, "bytes", "a"), /no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCallArgs: checks the argument count against the signature", async () => {
  const add = { name: "Add", params: ["i32", "i32"] as const, returns: "i32" };
  assert.deepEqual(await parseCallArgs(add, ["1", "2"]), [1, 2]);
  await assert.rejects(
    () => parseCallArgs(add, ["1"]),
    /Add takes 2 arguments, got 1: Add\(i32, i32\) -> i32/,
  );
  await assert.rejects(() => parseCallArgs(add, ["1", "x"]), /argument 2 of Add \(i32\) is "x"/);
});

Deno.test("formatValue: plain and JSON", () => {
  assert.equal(formatValue(42, "i32"), "42");
  assert.equal(formatValue(-(1n << 63n), "i64"), "-9223372036854775808");
  assert.equal(formatValue("héllo", "string"), "héllo");
  assert.equal(formatValue(new Uint8Array([0, 255]), "bytes"), "00ff");
  assert.equal(formatValue(undefined, "void"), "");
  assert.equal(formatValue(true, "bool"), "true");
  assert.equal(formatValue(1n << 63n, "u64", true), '"9223372036854775808"');
  assert.equal(formatValue(new Uint8Array([1]), "bytes", true), '"01"');
  assert.equal(formatValue(undefined, "void", true), "null");
  assert.equal(formatValue('a"b', "string", true), '"a\\"b"');
  assert.equal(formatValue(Infinity, "f64", true), '"Infinity"');
});
