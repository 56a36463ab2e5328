/**
 * The fuzzers' driver (`deno task fuzz`). Each target runs in a child process that this one supervises: a
 * child that crashes (a signal, an abort of the Deno process) or hangs (no progress for `--stall` seconds)
 * is itself a finding: the input it was working on goes into the corpus and the run resumes after it.
 *
 * ```sh
 * deno task fuzz                                   # every target, 60 s each, random seed
 * deno task fuzz --target snapshot --seconds 600   # one target for ten minutes
 * deno task fuzz --target elf --iterations 50000 --seed 7
 * deno task fuzz --replay [--replay-dir DIR]       # replay tests/fuzz/corpus/ (or DIR)
 * ```
 *
 * Options: `--target snapshot|elf|channel|all`, `--seconds N` or `--iterations N` (per target), `--seed N`,
 * `--corpus DIR` (default `tests/fuzz/corpus/`), `--stall N` (seconds without progress that count as a
 * hang, default 60), `--replay` with optional `--replay-dir DIR`. Prints cases/s, outcome
 * counts and failures; exits 1 if anything failed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  CORPUS_DIR,
  corpusFiles,
  type Failure,
  type FuzzOptions,
  type FuzzResult,
  readCorpusInput,
  saveToCorpus,
  signature,
  type Target,
  TARGETS,
} from "./_harness.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const SELF = decodeURIComponent(new URL(import.meta.url).pathname);

/** What the case in flight is written to in the child's work directory, per target. */
const INFLIGHT: Record<Target, { file: string; ext: string }> = {
  snapshot: { file: "case.hls", ext: ".hls.gz" },
  elf: { file: "case.elf", ext: ".elf" },
  channel: { file: "case.json", ext: ".json" },
};

/** Options of a supervised run. */
export interface SuperviseOptions {
  /** Seed. */
  seed: number;
  /** Cases to run, or */
  iterations?: number;
  /** seconds to run. */
  seconds?: number;
  /** Where failing inputs go; none are written when absent. */
  corpusDir?: string;
  /** Replay this corpus directory instead of fuzzing. */
  replayDir?: string;
  /** Seconds without any output from the child that count as a hang (default 60). */
  stallSeconds?: number;
  /** Print progress lines. */
  verbose?: boolean;
}

/** A supervised run's result: the fuzzers' result plus crashes and hangs of the child. */
export interface SupervisedResult extends FuzzResult {
  /** Child processes that died or hung. */
  crashes: number;
}

async function fuzzerOf(target: Target): Promise<(opts: FuzzOptions) => Promise<FuzzResult>> {
  if (target === "snapshot") return (await import("./snapshot_fuzz.ts")).fuzzSnapshots;
  if (target === "elf") return (await import("./elf_fuzz.ts")).fuzzElf;
  return (await import("./channel_fuzz.ts")).fuzzChannel;
}

async function replayerOf(
  target: Target,
): Promise<(bytes: Uint8Array, workDir: string) => string | undefined> {
  if (target === "snapshot") return (await import("./snapshot_fuzz.ts")).replaySnapshotInput;
  if (target === "elf") return (await import("./elf_fuzz.ts")).replayElfInput;
  return (await import("./channel_fuzz.ts")).replayChannelInput;
}

// ---- child -------------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

function emit(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
}

async function child(args: Record<string, string | boolean | undefined>): Promise<void> {
  const target = args.target as Target;
  const workDir = args.work as string;
  if (args.replay) {
    const replay = await replayerOf(target);
    const files = corpusFiles(args["replay-dir"] as string, target);
    const failures: Failure[] = [];
    const outcomes: Record<string, number> = {};
    const t0 = performance.now();
    files.forEach((file, i) => {
      emit(`c ${i}`);
      const problem = replay(readCorpusInput(file), workDir);
      outcomes[problem ? "fails" : "passes"] = (outcomes[problem ? "fails" : "passes"] ?? 0) + 1;
      if (problem) {
        const f = { index: i, description: `replay of ${file}`, message: problem, saved: file };
        failures.push(f);
        emit(JSON.stringify({ failure: f }));
      }
    });
    const result: FuzzResult = {
      target,
      cases: files.length,
      failures,
      outcomes,
      elapsedMs: performance.now() - t0,
    };
    emit(JSON.stringify({ done: result }));
    return;
  }
  const fuzz = await fuzzerOf(target);
  const seconds = args.seconds === undefined ? undefined : Number(args.seconds);
  const result = await fuzz({
    seed: Number(args.seed),
    iterations: args.iterations === undefined ? Number.MAX_SAFE_INTEGER : Number(args.iterations),
    start: Number(args.start ?? 0),
    corpusDir: args.corpus as string | undefined,
    workDir,
    long: seconds !== undefined,
    deadline: seconds === undefined ? undefined : performance.now() + seconds * 1000,
    onCase: (i) => emit(`c ${i}`),
    onProgress: (n) => emit(JSON.stringify({ progress: n })),
    onFailure: (f) => emit(JSON.stringify({ failure: f })),
  });
  emit(JSON.stringify({ done: result }));
}

// ---- parent ------------------------------------------------------------------------------------------------

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) yield buf;
}

/**
 * Runs one target in child processes until its budget is used up, restarting after a crash or hang.
 *
 * @example
 * ```ts ignore
 * const r = await supervise("elf", { seed: 1, iterations: 5000 });
 * console.log(r.cases, r.failures.length, r.crashes);
 * ```
 */
export async function supervise(target: Target, opts: SuperviseOptions): Promise<SupervisedResult> {
  const total: SupervisedResult = { target, cases: 0, failures: [], outcomes: {}, elapsedMs: 0, crashes: 0 };
  const t0 = performance.now();
  const deadline = opts.seconds !== undefined ? t0 + opts.seconds * 1000 : undefined;
  const stallMs = (opts.stallSeconds ?? 60) * 1000;
  let start = 0;
  const workDir = Deno.makeTempDirSync({ prefix: `snapvm-fuzz-${target}-` });
  try {
    for (;;) {
      const remaining = opts.iterations !== undefined ? opts.iterations - start : undefined;
      if (remaining !== undefined && remaining <= 0 && !opts.replayDir) break;
      const secondsLeft = deadline !== undefined ? (deadline - performance.now()) / 1000 : undefined;
      if (secondsLeft !== undefined && secondsLeft <= 0 && !opts.replayDir) break;
      const args = ["run", "-A", "--config", `${ROOT}deno.json`, SELF, "--child", "--target", target];
      args.push("--seed", String(opts.seed), "--start", String(start), "--work", workDir);
      if (opts.replayDir) args.push("--replay", "--replay-dir", opts.replayDir);
      else if (remaining !== undefined) args.push("--iterations", String(remaining));
      else args.push("--seconds", String(secondsLeft));
      if (opts.corpusDir) args.push("--corpus", opts.corpusDir);
      const proc = new Deno.Command(Deno.execPath(), {
        args,
        stdout: "piped",
        stderr: "inherit",
        stdin: "null",
      })
        .spawn();
      let lastCase = start - 1;
      let done: FuzzResult | undefined;
      let stalled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stalled = true;
          try {
            proc.kill("SIGKILL");
          } catch { /* already gone */ }
        }, stallMs);
      };
      arm();
      let lastPrint = performance.now();
      for await (const line of lines(proc.stdout)) {
        arm();
        if (line.startsWith("c ")) lastCase = Number(line.slice(2));
        else if (line.startsWith("{")) {
          const msg = JSON.parse(line);
          if (msg.done) done = msg.done;
          if (msg.failure) {
            total.failures.push(msg.failure);
            if (opts.verbose) {
              console.log(`[${target}] failure in case ${msg.failure.index}: ${msg.failure.description}`);
            }
          }
          if (msg.progress !== undefined && opts.verbose && performance.now() - lastPrint > 5000) {
            lastPrint = performance.now();
            const n = total.cases + msg.progress;
            const rate = n / ((performance.now() - t0) / 1000);
            console.log(
              `[${target}] ${n} cases, ${rate.toFixed(0)}/s, ${total.failures.length} failures so far`,
            );
          }
        }
      }
      clearTimeout(timer);
      const status = await proc.status;
      if (done) {
        total.cases += done.cases; // its failures arrived one by one already
        for (const [k, v] of Object.entries(done.outcomes)) total.outcomes[k] = (total.outcomes[k] ?? 0) + v;
        if (status.success) break;
      }
      // The child died or hung in case `lastCase`: that case is the finding.
      total.crashes++;
      total.cases += done ? 0 : Math.max(0, lastCase - start + 1);
      const how = stalled
        ? `hang: no progress for ${stallMs / 1000} s (killed)`
        : `crash: the Deno process exited with ${
          status.signal ? `signal ${status.signal}` : `code ${status.code}`
        }`;
      const failure: Failure = { index: lastCase, description: `${target} case ${lastCase}`, message: how };
      if (opts.replayDir) {
        failure.description = `replay of corpus file #${lastCase}`;
      } else if (opts.corpusDir) {
        try {
          const input = Deno.readFileSync(`${workDir}/${INFLIGHT[target].file}`);
          failure.saved = saveToCorpus(
            opts.corpusDir,
            target,
            input,
            INFLIGHT[target].ext,
            `${target} case ${lastCase} of seed ${opts.seed}\n${how}`,
          );
        } catch (e) {
          failure.message += ` (input not saved: ${(e as Error).message})`;
        }
      }
      total.failures.push(failure);
      if (opts.verbose) {
        console.log(
          `[${target}] ${how} in case ${lastCase}${failure.saved ? `; saved ${failure.saved}` : ""}`,
        );
      }
      if (opts.replayDir) break;
      start = lastCase + 1;
    }
  } finally {
    Deno.removeSync(workDir, { recursive: true });
  }
  total.elapsedMs = performance.now() - t0;
  return total;
}

/** The failures grouped by kind (message without numbers), each kind with a count and up to two examples. */
export function formatFailures(r: SupervisedResult, maxKinds = 10): string {
  const kinds = new Map<string, Failure[]>();
  for (const f of r.failures) {
    const sig = signature(f.message);
    kinds.set(sig, [...(kinds.get(sig) ?? []), f]);
  }
  const out: string[] = [];
  for (const [, fs] of [...kinds].slice(0, maxKinds)) {
    out.push(`  ${fs.length} × ${fs[0].message.split("\n")[0].slice(0, 300)}`);
    for (const f of fs.slice(0, 2)) {
      out.push(`    e.g. #${f.index} ${f.description}${f.saved ? ` (saved: ${f.saved})` : ""}`);
    }
  }
  if (kinds.size > maxKinds) out.push(`  … and ${kinds.size - maxKinds} more kinds`);
  return out.join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      target: { type: "string", default: "all" },
      seconds: { type: "string" },
      iterations: { type: "string" },
      seed: { type: "string" },
      corpus: { type: "string" },
      stall: { type: "string" },
      replay: { type: "boolean", default: false },
      "replay-dir": { type: "string" },
      work: { type: "string" },
      start: { type: "string" },
      child: { type: "boolean", default: false },
    },
    allowPositionals: false,
  });
  if (values.child) {
    await child(values);
    return 0;
  }
  const replayDir = values.replay ? (values["replay-dir"] ?? CORPUS_DIR) : undefined;
  const targets: Target[] = values.target === "all" ? [...TARGETS] : [values.target as Target];
  for (const t of targets) {
    if (!TARGETS.includes(t)) throw new Error(`unknown target ${t}; use ${TARGETS.join(", ")} or all`);
  }
  const seed = values.seed !== undefined ? Number(values.seed) : (Date.now() ^ (Deno.pid << 16)) >>> 0;
  const corpusDir = values.corpus ?? CORPUS_DIR;
  const iterations = values.iterations !== undefined ? Number(values.iterations) : undefined;
  const seconds = iterations === undefined ? Number(values.seconds ?? 60) : undefined;
  console.log(
    replayDir
      ? `replaying ${replayDir}`
      : `seed ${seed}; ${
        iterations !== undefined ? `${iterations} cases` : `${seconds} s`
      } per target; corpus ${corpusDir}`,
  );
  let bad = 0;
  for (const target of targets) {
    const r = await supervise(target, {
      seed,
      iterations,
      seconds,
      corpusDir: replayDir ? undefined : corpusDir,
      replayDir,
      stallSeconds: values.stall !== undefined ? Number(values.stall) : 60,
      verbose: true,
    });
    const rate = r.cases / (r.elapsedMs / 1000);
    console.log(
      `\n[${target}] ${r.cases} cases in ${(r.elapsedMs / 1000).toFixed(1)} s (${
        rate.toFixed(0)
      } cases/s), ` +
        `${r.failures.length} failures, ${r.crashes} crashes/hangs`,
    );
    const top = Object.entries(r.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 24);
    for (const [k, v] of top) console.log(`  ${String(v).padStart(8)}  ${k}`);
    if (r.failures.length) console.log(formatFailures(r));
    bad += r.failures.length;
  }
  return bad ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
