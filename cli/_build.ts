/**
 * `snapvm build <src…> -o <elf>`: gcc with the guest SDK shipped in the package.
 *
 * @module
 */
import { buildGuest, GuestBuildError } from "../guest/sdk.ts";
import { parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";

const HELP =
  `Usage: snapvm build <source.c|.S…> -o <guest> [-I <dir>]… [-D <name[=value]>]… [--gcc <cmd>] [--verbose]

Compiles a guest with gcc against the guest SDK shipped in this package (snapvm.h, the runtime, the start
code and the linker script), with the flags guest/README.md documents. Include "snapvm.h" in your sources.
  -o <guest>      the guest binary to write (required)
  -I <dir>        extra include directory (repeat -I for more)
  -D <macro>      define a macro (repeat -D for more)
  --gcc <cmd>     the compiler (default gcc)
  --verbose       print the gcc command line
Needs gcc (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc); exit code 3 without it.`;

/** `snapvm build`. */
export const buildCommand: Command = {
  name: "build",
  summary: "compile a C guest with gcc and the SDK shipped in the package",
  help: HELP,
  async run(tokens) {
    // -I and -D repeat, so collect them before the generic parser (which keeps the last value).
    const flags: string[] = [];
    const rest: string[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === "-I" || t === "-D") {
        if (tokens[i + 1] === undefined) throw new UsageError(`${t} needs a value`, "build");
        flags.push(t, tokens[++i]);
      } else if (/^-[ID]./.test(t)) flags.push(t);
      else rest.push(t);
    }
    const args = parseArgs(rest, { "-o": "value", "--gcc": "value", "--verbose": "flag" }, "build");
    const output = args.options.get("-o");
    if (typeof output !== "string") throw new UsageError("-o <guest> is required", "build");
    if (args.positionals.length === 0) throw new UsageError("no source files given", "build");
    const gcc = args.options.get("--gcc");
    try {
      const r = await buildGuest(args.positionals, output, {
        gcc: typeof gcc === "string" ? gcc : undefined,
        flags,
      });
      if (args.options.has("--verbose")) console.error(r.command.join(" "));
      if (r.warnings.trim()) console.error(r.warnings.trimEnd());
      const size = (await Deno.stat(r.output)).size;
      console.log(`built ${output} (${size} bytes)`);
      return EXIT.ok;
    } catch (e) {
      // gcc's own diagnostics are the useful part: show them above the one-line summary.
      if (e instanceof GuestBuildError) console.error(e.log.trimEnd());
      throw e;
    }
  },
};
