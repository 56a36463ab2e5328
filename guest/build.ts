/**
 * Builds the C guests under `guest/` (every directory except `include`, `runtime` and `bin` that holds `.c`
 * files) with the machine's gcc and the SDK's flags ({@linkcode guestCflags} in `sdk.ts`). Run as a script it
 * builds into `guest/bin/`; without gcc it says so and leaves the committed binaries in place. The recipe is
 * the one documented in guest/README.md. This is the repository's build; packages use `sdk.ts`.
 *
 * @module
 */
import { guestCflags, haveGcc, RUNTIME_SOURCES, SDK_FILES } from "./sdk.ts";

export { haveGcc };

/** Directory of this file, i.e. `guest/`. */
const GUEST_DIR = decodeURIComponent(new URL(".", import.meta.url).pathname).replace(/\/$/, "");

/** Directories under `guest/` that are not guests. */
const NOT_GUESTS = new Set(["include", "runtime", "bin"]);

/**
 * gcc flags for a guest built in this checkout; sources and `-o` follow, and gcc runs in `guest/`.
 */
export const GUEST_CFLAGS: readonly string[] = guestCflags(GUEST_DIR);

async function cFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${GUEST_DIR}/${dir}`)) {
    if (e.isFile && (e.name.endsWith(".c") || e.name.endsWith(".S"))) out.push(`${dir}/${e.name}`);
  }
  return out.sort(); // readDir order is arbitrary; link order must not be
}

/**
 * Throws unless every file in `include/` and `runtime/` is listed in `SDK_FILES`: the package ships only the
 * listed files, so a guest built from the package would otherwise differ from one built here.
 */
async function checkSdkList(): Promise<void> {
  for (const dir of ["include", "runtime"]) {
    for await (const e of Deno.readDir(`${GUEST_DIR}/${dir}`)) {
      if (e.isFile && !SDK_FILES.includes(`${dir}/${e.name}`)) {
        throw new Error(`guest/${dir}/${e.name} is not listed in SDK_FILES in guest/sdk.ts`);
      }
    }
  }
}

/** Names of the guests (directories under `guest/` with C sources), sorted. */
export async function guestNames(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(GUEST_DIR)) {
    if (e.isDirectory && !NOT_GUESTS.has(e.name) && (await cFiles(e.name)).length > 0) names.push(e.name);
  }
  return names.sort();
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  } catch {
    return false;
  }
}

async function buildOne(name: string, outDir: string): Promise<string> {
  const sources = [...RUNTIME_SOURCES, ...await cFiles(name)];
  const target = `${outDir}/${name}`;
  const tmp = `${target}.tmp${Deno.pid}`;
  const args = [...GUEST_CFLAGS, ...sources, "-lgcc", "-o", tmp];
  const r = await new Deno.Command("gcc", { args, cwd: GUEST_DIR, stdout: "piped", stderr: "piped" })
    .output();
  const log = new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout);
  if (!r.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`building guest ${name} failed:\ngcc ${args.join(" ")}\n${log}`);
  }
  if (log.trim()) console.error(`guest ${name}: gcc warnings:\n${log}`);
  // Replace atomically, and only if the bytes changed, so concurrent readers never see a partial file.
  if (await sameBytes(tmp, target)) await Deno.remove(tmp);
  else await Deno.rename(tmp, target);
  return target;
}

/**
 * Compiles every guest into `outDir/<name>` (created if missing) and returns the paths. Throws if gcc is
 * missing or a build fails.
 *
 * @example
 * ```ts
 * import { buildGuests } from "./build.ts";
 * const paths = await buildGuests(await Deno.makeTempDir());
 * console.log(paths); // [".../badinit", ".../hello", ".../testguest"]
 * ```
 */
export async function buildGuests(outDir: string): Promise<string[]> {
  if (!(await haveGcc())) throw new Error("gcc not found: cannot build the guests");
  await checkSdkList();
  const abs = outDir.startsWith("/") ? outDir : `${Deno.cwd()}/${outDir}`;
  await Deno.mkdir(abs, { recursive: true });
  const names = await guestNames();
  return await Promise.all(names.map((n) => buildOne(n, abs)));
}

if (import.meta.main) {
  if (!(await haveGcc())) {
    console.log("gcc not found: using the committed guest binaries in guest/bin");
    Deno.exit(0);
  }
  const built = await buildGuests(`${GUEST_DIR}/bin`);
  console.log(`built ${built.map((p) => p.slice(GUEST_DIR.length + 1)).join(", ")}`);
}
