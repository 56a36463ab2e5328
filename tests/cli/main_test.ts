import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { describeError, EXIT, UsageError } from "../../cli/_errors.ts";
import { HypervisorUnavailableError, SnapshotFormatError } from "../../mod.ts";
import { GccNotFoundError } from "../../guest/sdk.ts";
import { needsTest, ROOT, runCli } from "./_cli.ts";

/** Asserts an error was reported as exactly one `snapvm: …` line and no stack. */
function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split("\n").filter((l) => l.startsWith("snapvm: "));
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace without --debug");
}

Deno.test("describeError maps error kinds to exit codes", () => {
  assert.equal(describeError(new UsageError("x"), "run").code, EXIT.usage);
  assert.match(describeError(new UsageError("x"), "run").line, /see 'snapvm run --help'/);
  assert.equal(
    describeError(new HypervisorUnavailableError("kvm", "/dev/kvm does not exist")).code,
    EXIT.environment,
  );
  assert.equal(describeError(new GccNotFoundError("gcc")).code, EXIT.environment);
  assert.equal(describeError(new Deno.errors.NotCapable("Requires read access")).code, EXIT.environment);
  const bad = new SnapshotFormatError("BadMagic", { field: "magic", found: "x", expected: "HLS\\0" });
  assert.deepEqual(describeError(bad), { line: bad.message, code: EXIT.failed, unexpected: false });
  assert.equal(describeError(new Error("boom\nsecond")).line, "Error: boom second");
  assert.equal(describeError(new Error("boom")).unexpected, true);
});

/** Every command, in the order `--help` lists them. */
const COMMANDS = [
  "new",
  "build",
  "snapshot",
  "inspect",
  "verify",
  "run",
  "bench",
  "push",
  "pull",
  "export",
  "import",
];

Deno.test("help, version and usage errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const help = await runCli(["--help"], dir);
    assert.equal(help.code, 0);
    const names = [...help.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]);
    assert.deepEqual(names, COMMANDS);
    assert.match(help.stdout, /Exit codes: 0 ok, 1 .*\n.*2 usage error.*3 missing KVM, gcc/);

    const none = await runCli([], dir);
    assert.equal(none.code, EXIT.usage);
    assert.match(none.stderr, /Usage: snapvm <command>/);

    assert.equal((await runCli(["--version"], dir)).stdout.trim(), denoJson.version);
    const unknown = await runCli(["frobnicate"], dir);
    assert.equal(unknown.code, EXIT.usage);
    assertOneLine(unknown.stderr, /^snapvm: unknown command "frobnicate"/);

    const gdb = await runCli(["run", "x.hls", "F", "--gdb", "70000"], dir);
    assert.equal(gdb.code, EXIT.usage);
    assertOneLine(gdb.stderr, /--gdb is "70000", expected a TCP port from 0 to 65535/);

    const opt = await runCli(["inspect", "--bogus", "x"], dir);
    assert.equal(opt.code, EXIT.usage);
    assertOneLine(opt.stderr, /^snapvm: unknown option --bogus \(see 'snapvm inspect --help'\)$/);
    const missing = await runCli(["verify", "nope.hls"], dir);
    assert.equal(missing.code, EXIT.failed);
    assertOneLine(missing.stderr, /^snapvm: Cannot read nope.hls: no such file$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every command has --help", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const c of COMMANDS) {
      const r = await runCli([c, "--help"], dir);
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`^Usage: snapvm ${c} `), c);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

needsTest(["gcc"], "build: the committed hello guest from source; gcc errors; no gcc", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = await runCli(["build", `${ROOT}guest/hello/hello.c`, "-o", "hello"], dir);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/hello`), await Deno.readFile(`${ROOT}guest/bin/hello`));

    await Deno.writeTextFile(`${dir}/bad.c`, '#include "snapvm.h"\nint x = ;\n');
    const bad = await runCli(["build", "bad.c", "-o", "bad"], dir);
    assert.equal(bad.code, EXIT.failed);
    assert.match(bad.stderr, /int x = ;/); // gcc's diagnostics come first
    assertOneLine(bad.stderr, /^snapvm: Cannot build guest: gcc failed: .*bad\.c:2:9: error/);

    const noGcc = await runCli(["build", "bad.c", "-o", "bad"], dir, { PATH: "/nonexistent" });
    assert.equal(noGcc.code, EXIT.environment);
    assertOneLine(noGcc.stderr, /^snapvm: gcc not found: install it \(.*install gcc.*\) or put it on PATH$/);

    const usage = await runCli(["build", "bad.c"], dir);
    assert.equal(usage.code, EXIT.usage);
    assertOneLine(usage.stderr, /-o <guest> is required/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

needsTest(["kvm", "gcc"], "new → build → snapshot → inspect → verify → run → bench", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const created = await runCli(["new", "proj"], dir);
    assert.equal(created.code, 0, created.stderr);
    const proj = `${dir}/proj`;
    const config = JSON.parse(await Deno.readTextFile(`${proj}/deno.json`));
    assert.deepEqual(Object.keys(config.tasks), ["build", "snapshot", "call", "start"]);
    const again = await runCli(["new", "proj"], dir);
    assert.equal(again.code, EXIT.failed);
    assertOneLine(again.stderr, /exists and is not empty/);

    const built = await runCli(["build", "guest.c", "-o", "guest.elf"], proj);
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout, /^built guest\.elf \(\d+ bytes\)/);

    const snap = await runCli(
      [
        "snapshot",
        "guest.elf",
        "-o",
        "guest.hls",
        "--heap",
        "1m",
        "--call",
        "Greet",
        "a",
        "--call",
        "Add",
        "2",
        "-5",
      ],
      proj,
    );
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /Greet\(a\) -> Hello, a! \(greeting 1\)\nAdd\(2, -5\) -> -3\n/);
    assert.match(snap.stdout, /wrote guest\.hls: .* 2 functions, 2 warm-up calls/);

    const info = await runCli(["inspect", "guest.hls", "--json"], proj);
    assert.equal(info.code, 0, info.stderr);
    const parsed = JSON.parse(info.stdout);
    assert.equal(parsed.entrypoint, "Call");
    assert.equal(parsed.compatible, true);
    assert.equal(parsed.header.heap_size, 1 << 20);
    assert.deepEqual(parsed.hostFunctions, ["HostPrint(string) -> i32"]);
    const human = await runCli(["inspect", "guest.hls"], proj);
    assert.match(human.stdout, /entry point Call\nloads on this host: yes\nmemory: .*heap 1 MiB/);

    const verified = await runCli(["verify", "guest.hls"], proj);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /^ok: guest\.hls/);

    // The warm-up call's effect on the guest's globals was saved.
    const greet = await runCli(["run", "guest.hls", "Greet", "b"], proj);
    assert.equal(greet.code, 0, greet.stderr);
    assert.equal(greet.stdout, "Hello, b! (greeting 2)\n");
    const json = await runCli(["run", "guest.hls", "Add", "0x10", "-1", "--json"], proj);
    assert.equal(json.stdout, "15\n");
    const fromElf = await runCli(["run", "guest.elf", "Greet", "c"], proj);
    assert.equal(fromElf.stdout, "Hello, c! (greeting 1)\n");

    const list = await runCli(["run", "guest.hls"], proj);
    assert.equal(list.code, EXIT.usage);
    assert.match(list.stderr, /Greet\(string\) -> string\n {2}Add\(i32, i32\) -> i32/);
    const wrong = await runCli(["run", "guest.hls", "Add", "1"], proj);
    assert.equal(wrong.code, EXIT.usage);
    assertOneLine(
      wrong.stderr,
      /Add takes 2 arguments, got 1: Add\(i32, i32\) -> i32 \(see 'snapvm run --help'\)/,
    );
    const layout = await runCli(["run", "guest.hls", "Add", "1", "2", "--heap", "1m"], proj);
    assert.equal(layout.code, EXIT.usage);
    assertOneLine(layout.stderr, /--heap applies to guest binaries/);

    const bench = await runCli(["bench", "guest.hls", "-n", "4", "--call", "Add", "1", "2"], proj);
    assert.equal(bench.code, 0, bench.stderr);
    assert.match(bench.stdout, /4 cold starts .* first call: Add\(i32, i32\) -> i32/);
    assert.match(bench.stdout, /\nfirst +[\d.]+ ms.*\nmedian +[\d.]+ ms.*\np90 +[\d.]+ ms/);

    // Corrupt one byte of the memory blob: inspect still describes it, verify and run refuse it.
    const bytes = await Deno.readFile(`${proj}/guest.hls`);
    bytes[parsed.header.memory_offset + 0x3000] ^= 1;
    await Deno.writeFile(`${proj}/bad.hls`, bytes);
    assert.equal((await runCli(["inspect", "bad.hls"], proj)).code, 0);
    const bad = await runCli(["verify", "bad.hls"], proj);
    assert.equal(bad.code, EXIT.failed);
    assertOneLine(
      bad.stderr,
      /^snapvm: Cannot load snapshot: blob_hash is [0-9a-f]{64}, expected [0-9a-f]{64}/,
    );
    assert.equal((await runCli(["run", "bad.hls", "Add", "1", "2"], proj)).code, EXIT.failed);
    const debug = await runCli(["verify", "bad.hls", "--debug"], proj);
    assert.match(debug.stderr, /^\s+at /m, "--debug shows the stack");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

needsTest(["kvm"], "run: every value type through the shipped test guest; guest errors exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = (...a: string[]) => runCli(["run", "example:testguest", ...a], dir);
    assert.equal((await run("Echo", "--", "--not-an-option")).stdout, "--not-an-option\n");
    assert.equal((await run("Echo", "--not-an-option")).code, EXIT.usage);
    assert.equal((await run("EchoI32", "-2147483648")).stdout, "-2147483648\n");
    assert.equal((await run("EchoU64", "18446744073709551615")).stdout, "18446744073709551615\n");
    assert.equal((await run("EchoU64", "0xff", "--json")).stdout, '"255"\n');
    assert.equal((await run("EchoF64", "-1.5e3")).stdout, "-1500\n");
    assert.equal((await run("EchoBool", "false")).stdout, "false\n");
    assert.equal((await run("EchoBytes", "00ff10")).stdout, "00ff10\n");
    await Deno.writeFile(`${dir}/blob`, new Uint8Array([1, 2, 254]));
    assert.equal((await run("EchoBytes", "@blob")).stdout, "0102fe\n");
    assert.equal((await run("Nothing")).stdout, "");

    const fail = await run("Fail", "101", "no luck");
    assert.equal(fail.code, EXIT.failed);
    assertOneLine(fail.stderr, /no luck/);
    const crash = await run("DivideByZero");
    assert.equal(crash.code, EXIT.failed);
    assertOneLine(crash.stderr, /^snapvm: Guest crashed: CPU exception \[vector 0 \(#DE divide error\)/);
    const missing = await run("NoSuchFunction");
    assert.equal(missing.code, EXIT.failed);
    assertOneLine(missing.stderr, /NoSuchFunction/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

needsTest(
  ["kvm"],
  "run --gdb: the guest waits for gdb, which loads its symbols through the stub",
  async (t) => {
    if (!(await hasGdb())) {
      if (Deno.env.get("CI") === "true") throw new Error("gdb missing in CI: this test must run there");
      console.error(
        "!!! gdb not found: SKIPPING the run --gdb session (it runs wherever gdb is installed) !!!",
      );
      return;
    }
    const dir = await Deno.makeTempDir();
    try {
      const port = await freeTcpPort();
      const gdb = new Deno.Command("gdb", {
        args: [
          "-nx",
          "-batch",
          ...["-ex", "set tcp connect-timeout 60", "-ex", `target remote 127.0.0.1:${port}`],
          ...["-ex", "break echo", "-ex", "continue"],
          ...["-ex", "stepi", "-ex", "stepi", "-ex", "set var *(int *)($rdx + 8) = 42", "-ex", "continue"],
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const guest = `${ROOT}guest/bin/testguest`;
      const [run, session] = await Promise.all([
        runCli(["run", guest, "EchoI32", "7", "--gdb", `${port}`], dir),
        gdb,
      ]);
      const text = new TextDecoder().decode(session.stdout);
      assert.equal(run.stdout, "42\n", run.stderr + text);
      assert.match(run.stderr, new RegExp(`waiting for gdb on 127\\.0\\.0\\.1:${port}`));
      assert.ok(text.includes(`Reading symbols from ${guest}...`), text);
      assert.match(text, /Breakpoint 1, 0x[0-9a-f]+ in echo \(\)/, text);
      assert.match(text, /\[Inferior 1 \(Remote target\) exited normally\]/, text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    void t;
  },
);

async function hasGdb(): Promise<boolean> {
  try {
    return (await new Deno.Command("gdb", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** A TCP port nobody listens on now. */
async function freeTcpPort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await Promise.resolve();
  return port;
}
