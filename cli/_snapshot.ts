/**
 * `snapvm snapshot <guest> -o <file.hls>`: boot a guest, make optional warm-up calls, save the snapshot.
 *
 * @module
 */
import { formatCount, formatSize, formatValue, parseArgs, parseCallArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import {
  GUEST_FORMS,
  openTarget,
  requireFile,
  SANDBOX_OPTIONS,
  SANDBOX_OPTIONS_HELP,
  sandboxConfig,
  startSandbox,
} from "./_target.ts";
import { GuestFunctionNotFoundError, HostFunctions, Snapshot, type Value } from "../mod.ts";

const HELP = `Usage: snapvm snapshot <guest> -o <file.hls> [sandbox options] [--call <Fn> [args…]]…
                       [--base <base.hls>] [--working-set] [--no-binary]

Creates a sandbox from <guest> (${GUEST_FORMS}), runs guest init,
makes each --call in order (warm-up: their effects on globals and the heap are saved), and writes the
snapshot atomically to <file.hls>. Arguments are parsed per the function's signature (see 'snapvm run --help').
  -o <file.hls>         the snapshot file to write (required)
  --call <Fn> [args…]   call Fn before saving; repeatable
  --base <base.hls>     write a delta: only the pages that differ from <base.hls> (same layout; keep both
                        files in one directory, the delta names its base)
  --working-set         record the working set: the pages a sandbox started from the snapshot touches while
                        it makes the --call calls again, so that a cold start from a cold page cache reads
                        them in one batch
  --no-binary           do not record the guest binary's path (recorded for a local guest file, for
                        debuggers and core dumps; leave it out for files that leave this machine)

${SANDBOX_OPTIONS_HELP}`;

/** `snapvm snapshot`. */
export const snapshotCommand: Command = {
  name: "snapshot",
  summary: "boot a guest, make warm-up calls, write a snapshot file (complete or a delta)",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(
      tokens,
      {
        ...SANDBOX_OPTIONS,
        "-o": "value",
        "--call": "call",
        "--base": "value",
        "--working-set": "flag",
        "--no-binary": "flag",
      },
      "snapshot",
    );
    const output = args.options.get("-o");
    if (typeof output !== "string") throw new UsageError("-o <file.hls> is required", "snapshot");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one guest", "snapshot");
    const base = args.options.get("--base");
    if (typeof base === "string") await requireFile(base);
    const target = await openTarget(args.positionals[0], "snapshot");
    if (target.kind !== "elf") {
      throw new UsageError(`${target.name} is already a snapshot: give a guest binary`, "snapshot");
    }
    const config = sandboxConfig(args, target.kind, "snapshot");
    using sbx = startSandbox(target, config);
    const functions = new Map(sbx.guestFunctions().map((f) => [f.name, f]));
    const calls: { name: string; args: Value[] }[] = [];
    for (const call of args.calls) {
      const fn = functions.get(call.name);
      if (fn === undefined) throw new GuestFunctionNotFoundError(call.name);
      const values = await parseCallArgs(fn, call.args);
      calls.push({ name: fn.name, args: values });
      const value = sbx.call(fn.name, ...values);
      console.log(`${fn.name}(${call.args.join(", ")}) -> ${formatValue(value, fn.returns)}`);
    }
    using snap = sbx.snapshot();
    let workingSet = "";
    if (args.options.has("--working-set")) {
      // The same calls again, on a throwaway sandbox of the snapshot; what the guest prints is not shown twice.
      const quiet = new HostFunctions().registerPrint(() => {});
      const ws = snap.recordWorkingSet((copy) => {
        for (const call of calls) copy.call(call.name, ...call.args);
      }, quiet);
      workingSet = `, working set ${formatCount(ws.pages, "page")} in ${formatCount(ws.runs, "run")}`;
    }
    await snap.toFile(output, {
      base: typeof base === "string" ? base : undefined,
      binary: !args.options.has("--no-binary"),
    });
    let delta = "";
    if (typeof base === "string") {
      const info = Snapshot.inspectFile(output).base!;
      delta = `, a delta over ${base} storing ${formatCount(info.pages, "page")} in ${
        formatCount(info.runs, "run")
      }`;
    }
    console.log(
      `wrote ${output}: ${formatSize(snap.memorySize)} of guest memory, ${functions.size} functions, ` +
        `${formatCount(args.calls.length, "warm-up call")}${delta}${workingSet}`,
    );
    return EXIT.ok;
  },
};
