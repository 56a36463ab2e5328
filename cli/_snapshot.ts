/**
 * `snapvm snapshot <guest> -o <file.hls>`: boot a guest, make optional warm-up calls, save the snapshot.
 *
 * @module
 */
import { formatSize, formatValue, parseArgs, parseCallArgs } from "./_args.ts";
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
import { GuestFunctionNotFoundError } from "../mod.ts";

const HELP = `Usage: snapvm snapshot <guest> -o <file.hls> [sandbox options] [--call <Fn> [args…]]…

Creates a sandbox from <guest> (${GUEST_FORMS}), runs guest init,
makes each --call in order (warm-up: their effects on globals and the heap are saved), and writes the
snapshot atomically to <file.hls>. Arguments are parsed per the function's signature (see 'snapvm run --help').
  -o <file.hls>   the snapshot file to write (required)
  --call <Fn> [args…]   call Fn before saving; repeatable

${SANDBOX_OPTIONS_HELP}`;

/** `snapvm snapshot`. */
export const snapshotCommand: Command = {
  name: "snapshot",
  summary: "boot a guest, make warm-up calls, write a snapshot file",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, { ...SANDBOX_OPTIONS, "-o": "value", "--call": "call" }, "snapshot");
    const output = args.options.get("-o");
    if (typeof output !== "string") throw new UsageError("-o <file.hls> is required", "snapshot");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one guest", "snapshot");
    const target = await openTarget(args.positionals[0], "snapshot");
    if (target.kind !== "elf") {
      throw new UsageError(`${target.name} is already a snapshot: give a guest binary`, "snapshot");
    }
    const config = sandboxConfig(args, target.kind, "snapshot");
    using sbx = startSandbox(target, config);
    const functions = new Map(sbx.guestFunctions().map((f) => [f.name, f]));
    for (const call of args.calls) {
      const fn = functions.get(call.name);
      if (fn === undefined) throw new GuestFunctionNotFoundError(call.name);
      const value = sbx.call(fn.name, ...await parseCallArgs(fn, call.args));
      console.log(`${fn.name}(${call.args.join(", ")}) -> ${formatValue(value, fn.returns)}`);
    }
    using snap = sbx.snapshot();
    await snap.toFile(output);
    console.log(
      `wrote ${output}: ${formatSize(snap.memorySize)} of guest memory, ${functions.size} functions, ` +
        `${args.calls.length} warm-up call${args.calls.length === 1 ? "" : "s"}`,
    );
    return EXIT.ok;
  },
};
