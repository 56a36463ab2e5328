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
  --gdb <port>  debug the guest with gdb (not implemented yet)

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
    if (args.options.has("--gdb")) throw new UsageError("run --gdb is not implemented yet", "run");
    const [file, name, ...texts] = args.positionals;
    if (file === undefined) throw new UsageError("expected a snapshot file or guest", "run");
    const target = await openTarget(file, "run");
    const config = sandboxConfig(args, target.kind, "run");
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
