/**
 * `deno task demo`: the main job of snapvm, end to end. A guest boots from its ELF, is warmed up and
 * snapshotted to a file; then a second Deno process (this same file, run with `--cold-start`) starts
 * sandboxes from that file without the guest binary and without guest init, and reports its timings.
 * Finally a guest crash shows that the host process is unaffected.
 *
 * @module
 */
import { GuestCrashedError, MultiUseSandbox, Snapshot, UninitializedSandbox } from "./mod.ts";

/** Median of samples. */
function median(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const ms = (v: number) => `${v.toFixed(2)} ms`;

/**
 * The second process: cold starts from the snapshot file. Prints one JSON line with its timings, so the
 * first process can show them next to its own.
 */
function coldStart(path: string): void {
  const phases = { load: [] as number[], start: [] as number[], call: [] as number[] };
  let greeting = "";
  for (let i = 0; i <= 30; i++) {
    const t0 = performance.now();
    using snap = Snapshot.fromFileUnchecked(path);
    const t1 = performance.now();
    using sbx = MultiUseSandbox.fromSnapshot(snap);
    const t2 = performance.now();
    const result = sbx.call("Hello", "second process");
    const t3 = performance.now();
    if (i === 0) greeting = result as string;
    phases.load.push(t1 - t0);
    phases.start.push(t2 - t1);
    phases.call.push(t3 - t2);
  }
  const v0 = performance.now();
  Snapshot.fromFile(path).close();
  const verify = performance.now() - v0;
  const first = { load: phases.load[0], start: phases.start[0], call: phases.call[0] };
  const later = {
    load: median(phases.load.slice(1)),
    start: median(phases.start.slice(1)),
    call: median(phases.call.slice(1)),
  };
  console.log(JSON.stringify({ greeting, first, later, verify }));
}

if (Deno.args[0] === "--cold-start") {
  coldStart(Deno.args[1]);
  Deno.exit(0);
}

const guest = new URL("./guest/bin/hello", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "snapvm-demo-" });
const file = `${dir}/hello.hls`;

try {
  console.log("snapvm demo: guest code in a KVM micro-VM, snapshotted to a file, cold-started elsewhere\n");

  console.log("1. Boot the hello guest from its ELF (create the VM, load the image, run guest init)");
  const u = new UninitializedSandbox(guest, { guestLogLevel: "off" });
  let t = performance.now();
  const first = u.evolve();
  const firstMs = performance.now() - t;
  first.close();
  t = performance.now();
  using sbx = u.evolve();
  const againMs = performance.now() - t;
  console.log(`   first evolve in this process: ${ms(firstMs)}   a second one: ${ms(againMs)}`);
  console.log(`   Hello("Deno") -> ${JSON.stringify(sbx.call("Hello", "Deno"))}`);

  console.log("\n2. Snapshot it (state after init and that call) and write the file");
  t = performance.now();
  using snap = sbx.snapshot();
  const snapMs = performance.now() - t;
  t = performance.now();
  await snap.toFile(file);
  const fileMs = performance.now() - t;
  const size = (await Deno.stat(file)).size;
  console.log(
    `   sbx.snapshot(): ${ms(snapMs)}   snap.toFile(): ${ms(fileMs)} (${(size / 1024).toFixed(0)} KiB,`,
  );
  console.log("   written atomically: temp file, fsync, rename, fsync of the directory)");

  console.log("\n3. A second Deno process cold-starts from the file: no ELF, no guest init");
  const args = [
    "run",
    `--allow-read=${file}`,
    "--allow-ffi",
    new URL(import.meta.url).pathname,
    "--cold-start",
    file,
  ];
  console.log(`   deno ${args.slice(0, 3).join(" ")} demo.ts --cold-start hello.hls`);
  t = performance.now();
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" }).output();
  const wallMs = performance.now() - t;
  if (!out.success) throw new Error(`the second process failed with exit code ${out.code}`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  const sum = (p: { load: number; start: number; call: number }) => p.load + p.start + p.call;
  console.log(`   Hello("second process") -> ${JSON.stringify(r.greeting)}`);
  console.log("                                  first start   later starts (median of 30)");
  for (
    const [label, key] of [
      ["Snapshot.fromFileUnchecked", "load"],
      ["MultiUseSandbox.fromSnapshot", "start"],
      ["first call", "call"],
    ] as const
  ) {
    console.log(`   ${label.padEnd(29)}${ms(r.first[key]).padStart(12)}${ms(r.later[key]).padStart(16)}`);
  }
  console.log(`   ${"total".padEnd(29)}${ms(sum(r.first)).padStart(12)}${ms(sum(r.later)).padStart(16)}`);
  console.log(`   Snapshot.fromFile instead (also hashes the whole memory blob): ${ms(r.verify)}`);
  console.log(`   the whole second process, Deno startup included: ${ms(wallMs)}`);
  console.log(
    `\n   The first start of a process pays ${ms(sum(r.first) - sum(r.later))} once (per process or Worker):`,
  );
  console.log("   - the first load binds libc's functions with Deno.dlopen (about 100 µs per function) and");
  console.log("     compiles snapvm's code;");
  console.log(
    '   - the first sandbox opens /dev/kvm, checks the KVM API and creates an idle "keeper" VM with',
  );
  console.log(
    "     one vCPU that lives as long as the process (without a live vCPU, every vCPU creation and",
  );
  console.log("     VM close costs several times more);");
  console.log("   - the first call runs code paths for the first time.");
  console.log('   Every later start from the same file costs only the "later" column.');

  console.log("\n4. Containment: the guest crashes, the host process carries on");
  const crashy = new UninitializedSandbox(new URL("./guest/bin/testguest", import.meta.url).pathname);
  crashy.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
  using victim = crashy.evolve();
  try {
    victim.call("DivideByZero");
  } catch (e) {
    if (!(e instanceof GuestCrashedError)) throw e;
    console.log(`   the guest divided by zero; the host got: ${e.message}`);
  }
  console.log(`   sandbox poisoned: ${victim.poisoned}; Add(2, 40) on a fresh one: ${
    (() => {
      using fresh = crashy.evolve();
      return fresh.call("Add", 2, 40);
    })()
  }`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
