/**
 * `snapvm new <dir>`: a guest skeleton that builds, snapshots and runs with `deno task`, using the same
 * snapvm the command was run from (JSR, another server, or a checkout).
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, OperationError, UsageError } from "./_errors.ts";

const GUEST_C =
  `/* A snapvm guest. \`deno task build\` compiles it, \`deno task snapshot\` boots it and saves guest.hls. */
#include "snapvm.h"

/* Globals persist from call to call, and a snapshot saves them. */
static uint64_t g_greetings;
static char g_out[300]; /* results must outlive the call: static, not on the stack */

/* Greet(name) -> "Hello, <name>! (greeting <n>)" */
static int32_t greet(const sv_value *args, uint32_t argc, sv_value *ret) {
  (void)argc;
  g_greetings++;
  int n = sv_snprintf(g_out, sizeof g_out, "Hello, %s! (greeting %llu)", args[0].str.ptr,
                      (unsigned long long)g_greetings);
  if (n >= (int)sizeof g_out) return sv_error(SV_ERR_BAD_ARGS, "name too long");
  *ret = sv_string_n(g_out, (uint32_t)n);
  return SV_OK;
}

/* Add(a, b) -> a + b */
static int32_t add(const sv_value *args, uint32_t argc, sv_value *ret) {
  (void)argc;
  ret->i32 = args[0].i32 + args[1].i32;
  return SV_OK;
}

void guest_main(void) {
  static const sv_type greet_params[] = {SV_STRING};
  static const sv_type add_params[] = {SV_I32, SV_I32};
  sv_register("Greet", SV_STRING, 1, greet_params, greet);
  sv_register("Add", SV_I32, 2, add_params, add);
}
`;

const MAIN_TS =
  `// Cold-starts the guest from the snapshot \`deno task snapshot\` wrote: no guest binary, no guest init.
import { MultiUseSandbox, Snapshot } from "@snapvm/snapvm";

using snap = Snapshot.fromFile(new URL("./guest.hls", import.meta.url));
using sbx = MultiUseSandbox.fromSnapshot(snap);
console.log(sbx.call("Greet", Deno.args[0] ?? "world"));
`;

const GITIGNORE = "guest.elf\nguest.hls\n";

/**
 * Where the skeleton gets snapvm from: the version on JSR when this CLI came from JSR, otherwise the same
 * URLs this CLI was loaded from. Also the flags that loading needs.
 */
function origin(): { cli: string; lib: string; importFlag: string; netFlag: string } {
  const here = new URL(import.meta.url);
  if (here.protocol === "file:") {
    return {
      cli: new URL("./main.ts", here).href,
      lib: new URL("../mod.ts", here).href,
      importFlag: "",
      netFlag: "",
    };
  }
  if (here.host === "jsr.io") {
    // Deno allows imports from jsr.io by default; the SDK files are fetched from it at build time.
    const spec = `jsr:@snapvm/snapvm@${denoJson.version}`;
    return { cli: `${spec}/cli`, lib: `${spec}`, importFlag: "", netFlag: " --allow-net=jsr.io" };
  }
  return {
    cli: new URL("./main.ts", here).href,
    lib: new URL("../mod.ts", here).href,
    importFlag: ` --allow-import=${here.host}`,
    netFlag: ` --allow-net=${here.host}`,
  };
}

/** The skeleton's deno.json. */
function skeletonConfig(): string {
  const o = origin();
  const run = `deno run${o.importFlag}`;
  return JSON.stringify(
    {
      tasks: {
        build:
          `${run} --allow-read --allow-write --allow-run=gcc${o.netFlag} ${o.cli} build guest.c -o guest.elf`,
        snapshot:
          `${run} --allow-read=. --allow-write=. --allow-ffi ${o.cli} snapshot guest.elf -o guest.hls --call Greet snapshot`,
        call: `${run} --allow-read=. --allow-ffi ${o.cli} run guest.hls`,
        start: `${run} --allow-read=. --allow-ffi main.ts`,
      },
      imports: { "@snapvm/snapvm": o.lib },
    },
    null,
    2,
  ) + "\n";
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(dir)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    if (e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

const HELP = `Usage: snapvm new <dir>

Creates <dir> with a guest skeleton:
  guest.c     a guest with Greet(string) -> string and Add(i32, i32) -> i32
  deno.json   tasks: build (gcc), snapshot (boot + one warm-up call + save guest.hls),
              call <Fn> [args…] (run a function from the snapshot), start (main.ts)
  main.ts     loads guest.hls with the library and calls Greet
<dir> must not exist or be empty. Then: cd <dir> && deno task build && deno task snapshot && deno task start`;

/** `snapvm new`. */
export const newCommand: Command = {
  name: "new",
  summary: "create a guest skeleton (C source + deno.json tasks)",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, {}, "new");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one directory", "new");
    const dir = args.positionals[0];
    if (!(await isEmptyOrMissing(dir))) {
      throw new OperationError(`Cannot create ${dir}: it exists and is not empty`);
    }
    await Deno.mkdir(dir, { recursive: true });
    const files: [string, string][] = [
      ["guest.c", GUEST_C],
      ["deno.json", skeletonConfig()],
      ["main.ts", MAIN_TS],
      [".gitignore", GITIGNORE],
    ];
    for (const [name, text] of files) await Deno.writeTextFile(`${dir}/${name}`, text);
    console.log(`created ${dir}: ${files.map(([n]) => n).join(", ")}`);
    console.log(`next: cd ${dir} && deno task build && deno task snapshot && deno task start`);
    return EXIT.ok;
  },
};
