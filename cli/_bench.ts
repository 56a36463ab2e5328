/**
 * `snapvm bench <file.hls>`: cold starts from a snapshot file in this process, timed phase by phase.
 *
 * @module
 */
import { blake3Backend, type GuestFunctionInfo, MultiUseSandbox, Snapshot, type Value } from "../mod.ts";
import { formatSignature, parseArgs, parseCallArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { requireFile } from "./_target.ts";
import { GuestFunctionNotFoundError } from "../mod.ts";

const HELP = `Usage: snapvm bench <file.hls> [-n <runs>] [--verify] [--call <Fn> [args…]]

Cold-starts sandboxes from <file.hls> in this process, -n times (default 50), each time:
  load      Snapshot.fromFileUnchecked (with --verify: Snapshot.fromFile, which hashes the whole blob)
  start     MultiUseSandbox.fromSnapshot
  call      the first call: --call Fn [args…], by default the first function that takes no arguments
and prints the first start separately (it also opens /dev/kvm and creates the process's keeper VM), then
the median and 90th percentile of the others. Later starts find the file in the page cache.`;

/** Median and 90th percentile (nearest rank) of samples in ms. */
function stats(samples: number[]): { median: number; p90: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p90: at(0.9) };
}

function ms(v: number): string {
  return `${v.toFixed(3)} ms`.padStart(11);
}

/** `snapvm bench`. */
export const benchCommand: Command = {
  name: "bench",
  summary: "time cold starts from a snapshot file (load + start + first call)",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, { "-n": "value", "--verify": "flag", "--call": "call" }, "bench");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one snapshot file", "bench");
    if (args.calls.length > 1) throw new UsageError("give at most one --call", "bench");
    const path = args.positionals[0];
    await requireFile(path);
    const nText = args.options.get("-n") ?? "50";
    const runs = typeof nText === "string" && /^\d+$/.test(nText) ? Number(nText) : 0;
    if (runs < 2 || runs > 100_000) throw new UsageError(`-n is "${nText}", expected 2 to 100000`, "bench");
    const load = args.options.has("--verify") ? Snapshot.fromFile : Snapshot.fromFileUnchecked;

    // The function to call is known only once a sandbox exists: the first run picks it.
    let fn: GuestFunctionInfo | undefined;
    let callArgs: Value[] = [];
    const samples = {
      load: [] as number[],
      start: [] as number[],
      call: [] as number[],
      total: [] as number[],
    };
    let first = { load: 0, start: 0, call: 0, total: 0 };
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      using snap = load(path);
      const t1 = performance.now();
      using sbx = MultiUseSandbox.fromSnapshot(snap);
      const t2 = performance.now();
      if (i === 0) {
        const functions = sbx.guestFunctions();
        const want = args.calls[0];
        fn = want === undefined
          ? functions.find((f) => f.params.length === 0)
          : functions.find((f) => f.name === want.name);
        if (want !== undefined && fn === undefined) throw new GuestFunctionNotFoundError(want.name);
        if (fn !== undefined) callArgs = await parseCallArgs(fn, want?.args ?? []);
      }
      const t3 = performance.now();
      if (fn !== undefined) sbx.call(fn.name, ...callArgs);
      const t4 = performance.now();
      const sample = { load: t1 - t0, start: t2 - t1, call: t4 - t3, total: t4 - t3 + t2 - t0 };
      if (i === 0) first = sample;
      else for (const k of ["load", "start", "call", "total"] as const) samples[k].push(sample[k]);
    }
    console.log(
      `${path}: ${runs} cold starts in this process (${
        args.options.has("--verify") ? "fromFile" : "fromFileUnchecked"
      }, ` +
        `${blake3Backend()} BLAKE3); first call: ${
          fn ? formatSignature(fn) : "none (pass --call <Fn> [args…])"
        }`,
    );
    console.log(
      `           ${"load".padStart(11)}${"start".padStart(11)}${"call".padStart(11)}${"total".padStart(11)}`,
    );
    console.log(`first      ${ms(first.load)}${ms(first.start)}${ms(first.call)}${ms(first.total)}`);
    for (const q of ["median", "p90"] as const) {
      const row = (["load", "start", "call", "total"] as const).map((k) => ms(stats(samples[k])[q])).join("");
      console.log(`${q.padEnd(11)}${row}`);
    }
    console.log("(the first start also opens /dev/kvm and creates the keeper VM every process keeps)");
    return EXIT.ok;
  },
};
