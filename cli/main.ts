/**
 * The `snapvm` command line: create, build, snapshot, inspect, verify, run and benchmark guests, and ship
 * snapshots through OCI registries and image layouts, with no checkout needed.
 *
 * ```sh
 * deno run -A jsr:@snapvm/snapvm/cli --help
 * deno run -A jsr:@snapvm/snapvm/cli new hello && cd hello && deno task build
 * ```
 *
 * Exit codes: 0 success, 1 the operation failed (a bad snapshot, a guest error, a failed build, a registry
 * error), 2 usage error, 3 something missing on the machine (KVM, gcc, a Deno permission). Errors are printed as one line;
 * `--debug` adds the stack.
 *
 * @example Run the CLI from code
 * ```ts ignore
 * import { main } from "@snapvm/snapvm/cli";
 * const code = await main(["verify", "guest.hls"]);
 * ```
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { setLogger } from "../mod.ts";
import { benchCommand } from "./_bench.ts";
import { buildCommand } from "./_build.ts";
import type { Command } from "./_command.ts";
import { describeError, EXIT } from "./_errors.ts";
import { inspectCommand } from "./_inspect.ts";
import { exportCommand } from "./_export.ts";
import { importCommand } from "./_import.ts";
import { newCommand } from "./_new.ts";
import { pullCommand } from "./_pull.ts";
import { pushCommand } from "./_push.ts";
import { runCommand } from "./_run.ts";
import { snapshotCommand } from "./_snapshot.ts";
import { verifyCommand } from "./_verify.ts";

/** Every command, in the order `--help` lists them. */
const COMMANDS: readonly Command[] = [
  newCommand,
  buildCommand,
  snapshotCommand,
  inspectCommand,
  verifyCommand,
  runCommand,
  benchCommand,
  pushCommand,
  pullCommand,
  exportCommand,
  importCommand,
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return `snapvm ${denoJson.version}: run guest code in KVM micro-VMs, snapshot it, cold-start it from a file

Usage: snapvm <command> [options]   (snapvm <command> --help for details)

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join("\n")}

Options for every command:
  -h, --help   show help
  --debug      print the stack of an error
  --version    print the version

Exit codes: 0 ok, 1 the operation failed (bad snapshot, guest error, failed build, registry error),
            2 usage error, 3 missing KVM, gcc or a Deno permission.`;
}

/**
 * Runs the CLI with `args` (the words after `snapvm`) and returns the exit code instead of exiting. Prints
 * results on stdout, and errors as one line (`snapvm: …`) on stderr.
 *
 * @param args The command line, e.g. `["inspect", "guest.hls", "--json"]`.
 * @returns 0 ok, 1 the operation failed, 2 usage error, 3 missing KVM, gcc or permission.
 *
 * @example
 * ```ts
 * import { main } from "./main.ts";
 * console.log(await main(["--version"])); // 0
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  const debug = args.includes("--debug");
  const rest = args.filter((a) => a !== "--debug");
  const help = rest.includes("--help") || rest.includes("-h");
  const words = rest.filter((a) => a !== "--help" && a !== "-h");
  if (words[0] === "--version") {
    console.log(denoJson.version);
    return EXIT.ok;
  }
  if (words[0] === "help") {
    words.shift();
    if (words.length === 0) {
      console.log(overview());
      return EXIT.ok;
    }
  }
  if (words.length === 0) {
    if (help) {
      console.log(overview());
      return EXIT.ok;
    }
    console.error(overview());
    return EXIT.usage;
  }
  const command = COMMANDS.find((c) => c.name === words[0]);
  if (command === undefined) {
    console.error(`snapvm: unknown command "${words[0]}" (see 'snapvm --help')`);
    return EXIT.usage;
  }
  if (help || rest[0] === "help") {
    console.log(command.help);
    return EXIT.ok;
  }
  // Guest log records go to stderr so stdout holds only results.
  setLogger((r) => console.error(`[${r.source} ${r.level}] ${r.message}`));
  try {
    return await command.run(words.slice(1));
  } catch (e) {
    const { line, code, unexpected } = describeError(e, command.name);
    console.error(`snapvm: ${line}`);
    if (debug && e instanceof Error && e.stack) console.error(e.stack);
    else if (unexpected) console.error("snapvm: (run again with --debug for the stack)");
    return code;
  } finally {
    setLogger(undefined);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
