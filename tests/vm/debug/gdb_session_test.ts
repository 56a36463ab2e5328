/**
 * The real gdb against real sandboxes: `gdb -batch` sessions that connect to an evolved sandbox and to one
 * loaded from a snapshot file, break on a testguest function by name, read an argument, single-step, write
 * guest memory and see the call's result change, and continue to the end; and `gdb <guest> <core>` on the
 * cores of crashes, naming the faulting function.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  GuestCrashedError,
  HostFunctions,
  MemoryAccessViolationError,
  MultiUseSandbox,
  setLogger,
  Snapshot,
  UninitializedSandbox,
} from "../../../mod.ts";
import { hasHypervisor, vmTest } from "../../_hypervisor.ts";
import { freePort } from "./_rsp_client.ts";
import { gdbTest, TESTGUEST_PATH } from "./_guest_memory.ts";

/** A test that needs the hypervisor and the real gdb (skipped loudly without either; gdb fails in CI). */
let warnedOs = false;

function sessionTest(name: string, fn: () => Promise<void>): void {
  if (Deno.build.os !== "linux") {
    if (!warnedOs) console.error(`!!! the gdb stub runs on Linux only: SKIPPING the gdb sessions !!!`);
    warnedOs = true;
    Deno.test({ name, ignore: true, fn });
  } else if (hasHypervisor) gdbTest(name, fn);
  else vmTest(name, fn);
}

function hostFns(): HostFunctions {
  return new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
}

/**
 * Starts `gdb -batch` with these commands (before the sandbox listens: gdb retries the connection). The
 * sandbox then runs on this thread while gdb drives it from its own process.
 */
function startGdb(commands: string[], file?: string): Deno.ChildProcess {
  const args = ["-nx", "-batch", "-ex", "set tcp connect-timeout 60"];
  for (const c of commands) args.push("-ex", c);
  if (file !== undefined) args.push(file);
  return new Deno.Command("gdb", { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
}

async function transcript(gdb: Deno.ChildProcess): Promise<string> {
  const out = await gdb.output();
  const d = new TextDecoder();
  return d.decode(out.stdout) + d.decode(out.stderr);
}

/** The session both tests run: EchoI32(7) is changed to return 42 and g_static to 100. */
function session(port: number): string[] {
  return [
    `target remote 127.0.0.1:${port}`,
    "info registers rip",
    "break echo",
    "continue",
    'printf "argument: %d\\n", *(int *)($rdi + 8)',
    "stepi",
    "stepi",
    "info registers rip",
    "set var *(int *)($rdx + 8) = 42",
    "set var *(int *)&g_static = 100",
    "delete",
    "continue",
  ];
}

function checkSession(text: string, entry: string): void {
  assert.match(text, new RegExp(`rip +0x[0-9a-f]+ +0x[0-9a-f]+ <${entry}>`), text);
  assert.match(text, /Breakpoint 1 at 0x[0-9a-f]+/, text);
  assert.match(text, /Breakpoint 1, 0x[0-9a-f]+ in echo \(\)/, text);
  assert.match(text, /argument: 7/, text);
  assert.match(text, /0x[0-9a-f]+ in echo \(\)\n0x[0-9a-f]+ in echo \(\)/, text);
  assert.match(text, /rip +0x[0-9a-f]+ +0x[0-9a-f]+ <echo\+7>/, text);
  assert.match(text, /\[Inferior 1 \(Remote target\) exited normally\]/, text);
}

sessionTest(
  "gdb debugs an evolved sandbox: break, read an argument, step, write memory, continue",
  async () => {
    const port = freePort();
    const gdb = startGdb(session(port), TESTGUEST_PATH);
    setLogger(() => {});
    try {
      const sbx = new UninitializedSandbox(TESTGUEST_PATH, { gdbPort: port }, hostFns()).evolve();
      assert.equal(sbx.call("EchoI32", 7), 42, "gdb changed the result");
      assert.equal(sbx.call("AddToStatic", 5), 105, "gdb changed g_static");
      sbx.close();
    } finally {
      setLogger(undefined);
    }
    const text = await transcript(gdb);
    checkSession(text, "_start");
    assert.match(text, /0x0+200000 in _start \(\)/, "stopped at the entry of guest init");
  },
);

sessionTest(
  "gdb debugs a sandbox loaded from a snapshot file, taking the symbols from the stub",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      {
        using s = new UninitializedSandbox(TESTGUEST_PATH, {}, hostFns()).evolve();
        await s.snapshot().toFile(`${dir}/testguest.hls`);
      }
      const port = freePort();
      const gdb = startGdb(session(port)); // no file: gdb asks the stub which binary runs
      using snap = Snapshot.fromFile(`${dir}/testguest.hls`);
      setLogger(() => {});
      try {
        const sbx = MultiUseSandbox.fromSnapshot(snap, hostFns(), {
          gdbPort: port,
          guestBinaryPath: TESTGUEST_PATH,
        });
        assert.equal(sbx.call("EchoI32", 7), 42);
        assert.equal(sbx.call("AddToStatic", 5), 105);
        sbx.close();
      } finally {
        setLogger(undefined);
      }
      const text = await transcript(gdb);
      assert.ok(text.includes(`Reading symbols from ${TESTGUEST_PATH}...`), text);
      checkSession(text, "sv_dispatch");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

sessionTest("gdb opens crash cores with the guest binary and names the faulting function", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const u = new UninitializedSandbox(TESTGUEST_PATH, { coreDumpDir: dir }, hostFns());
    const cases = [
      ["WildWrite", [0x10n], "wild_write", "SIGSEGV, Segmentation fault", MemoryAccessViolationError],
      ["DivideByZero", [], "divide_by_zero", "SIGFPE, Arithmetic exception", GuestCrashedError],
      ["IllegalInstruction", [], "illegal_instruction", "SIGILL, Illegal instruction", GuestCrashedError],
    ] as const;
    for (const [fn, args, cName, signal, type] of cases) {
      using sbx = u.evolve();
      let core = "";
      assert.throws(() => sbx.call(fn, ...args), (e: unknown) => {
        assert.ok(e instanceof type);
        core = e.coreFile!;
        return true;
      });
      const out = await new Deno.Command("gdb", {
        args: [
          "-nx",
          "-batch",
          "-ex",
          "bt",
          "-ex",
          "p $_siginfo._sifields._sigfault.si_addr",
          TESTGUEST_PATH,
          core,
        ],
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.match(text, new RegExp(`Core was generated by \`${TESTGUEST_PATH}'`), text);
      assert.match(text, new RegExp(`Program terminated with signal ${signal}\\.`), text);
      assert.match(text, new RegExp(`#0 +0x[0-9a-f]+ in ${cName} \\(\\)`), text);
      if (fn === "WildWrite") {
        // Without unwind tables gdb's prologue analysis finds the caller of a leaf that keeps RSP as is.
        assert.match(text, /#1 +0x[0-9a-f]+ in handle_call \(\)/, text);
        assert.match(text, /= \(void \*\) 0x10\n/, text);
      }
    }
    // On demand, between calls: the guest sits in its dispatch loop, g_static as the calls left it.
    using idle = u.evolve();
    idle.call("AddToStatic", 33);
    idle.coreDump(`${dir}/idle.core`);
    const out = await new Deno.Command("gdb", {
      args: [
        "-nx",
        "-batch",
        "-ex",
        "bt 1",
        "-ex",
        "p *(int *)&g_static",
        TESTGUEST_PATH,
        `${dir}/idle.core`,
      ],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /#0 +0x[0-9a-f]+ in sv_\w+ \(\)/, text);
    assert.match(text, /\$1 = 33/, text);
    assert.ok(!/Program terminated/.test(text), "no signal for an on-demand core");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
