/**
 * `snapvm run <file.hls|guest> <Fn> [args…]`: start a sandbox, call one function, print the result.
 *
 * @module
 */
import { GuestFunctionNotFoundError } from "../mod.ts";
import { formatSignature, formatValue, parseArgs, parseCallArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import {
  GUEST_FORMS,
  openTarget,
  SANDBOX_OPTIONS,
  SANDBOX_OPTIONS_HELP,
  sandboxConfig,
  startSandbox,
} from "./_target.ts";

const HELP = `Usage: snapvm run <file.hls|guest> <Fn> [args…] [--json] [--unchecked] [sandbox options]

Starts a sandbox from a snapshot file (verified as by 'snapvm verify', unless --unchecked) or from a guest
(${GUEST_FORMS}), calls Fn once and prints the result on stdout. Guest log records go to
stderr. Without <Fn>, lists the guest's functions (exit code 2).

Arguments are parsed per Fn's signature:
  i32 u32 i64 u64   decimal or 0x hex (-5, 0xff)
  f32 f64           1.5, -2e3, inf, nan
  bool              true false (or 1 0)
  string            as given
  bytes             hex digit pairs (00ff10, 0x00ff10; "" for none) or @file for a file's contents
An argument that starts with -- must come after a lone --.
Results: numbers in decimal, strings as they are, bytes as hex, nothing for void.
  --json        print the result as JSON (i64/u64 as decimal strings, bytes as a hex string)
  --unchecked   load the snapshot verifying header_hash only (Snapshot.fromFileUnchecked)
  --gdb <port>  debug the guest with gdb: listen on 127.0.0.1:<port> (0: any free port) and wait for gdb
                before the guest runs; then, in another terminal:
                  gdb <guest ELF> -ex 'target remote 127.0.0.1:<port>'
                (see docs/DEBUGGING.md; the time limit pauses while gdb has the guest stopped)

${SANDBOX_OPTIONS_HELP}`;

/** `snapvm run`. */
export const runCommand: Command = {
  name: "run",
  summary: "call one guest function from a snapshot or a guest binary and print the result",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(
      tokens,
      { ...SANDBOX_OPTIONS, "--json": "flag", "--unchecked": "flag", "--gdb": "value" },
      "run",
    );
    const [file, name, ...texts] = args.positionals;
    if (file === undefined) throw new UsageError("expected a snapshot file or guest", "run");
    const gdbPort = parseGdbPort(args.options.get("--gdb"));
    const target = await openTarget(file, "run");
    const config = sandboxConfig(args, target.kind, "run");
    if (gdbPort !== undefined) {
      config.gdbPort = gdbPort;
      // A guest given as a local file: gdb can load its symbols through the stub.
      if (target.kind === "elf" && !/^(example|https?|file):/i.test(file)) config.guestBinaryPath = file;
    }
    using sbx = startSandbox(target, config, args.options.has("--unchecked"));
    const functions = sbx.guestFunctions();
    if (name === undefined) {
      console.error(`${file} has these functions; name one to call it:`);
      for (const f of functions) console.error(`  ${formatSignature(f)}`);
      return EXIT.usage;
    }
    const fn = functions.find((f) => f.name === name);
    if (fn === undefined) throw new GuestFunctionNotFoundError(name);
    const value = sbx.call(fn.name, ...await parseCallArgs(fn, texts));
    const text = formatValue(value, fn.returns, args.options.has("--json"));
    if (text !== "" || args.options.has("--json")) console.log(text);
    return EXIT.ok;
  },
};

/** `--gdb <port>`: a TCP port, 0 to 65535; `undefined` without the option. */
function parseGdbPort(text: string | true | undefined): number | undefined {
  if (typeof text !== "string") return undefined;
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 0 && port <= 65535)) {
    throw new UsageError(`--gdb is "${text}", expected a TCP port from 0 to 65535`, "run");
  }
  return port;
}
