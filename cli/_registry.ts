/**
 * What the `push`, `pull`, `export` and `import` commands share: registry options (transport, credentials,
 * cache directory), reference parsing, and copying a pulled snapshot (with a delta's bases) out of the
 * cache.
 *
 * @module
 */
import {
  type OciReference,
  OciReferenceError,
  parseReference,
  type PulledSnapshot,
  readSnapshotConfig,
  type RegistryCredentials,
  type RegistryOptions,
} from "../format/oci/mod.ts";
import type { OptionSpec, ParsedArgs } from "./_args.ts";
import { OperationError, UsageError } from "./_errors.ts";

/** Environment variables read for credentials (only when Deno already grants reading them). */
export const CREDENTIAL_VARIABLES = {
  username: "SNAPVM_REGISTRY_USERNAME",
  password: "SNAPVM_REGISTRY_PASSWORD",
  token: "SNAPVM_REGISTRY_TOKEN",
} as const;

/** Options of every command that talks to a registry. */
export const REGISTRY_OPTIONS: OptionSpec = {
  "--insecure": "flag",
  "--username": "value",
  "--password-stdin": "flag",
};

/** Help text for {@linkcode REGISTRY_OPTIONS}. */
export const REGISTRY_OPTIONS_HELP = `Registry options:
  --insecure         allow plain HTTP to a registry that is not on this machine (localhost and 127.0.0.0/8
                     always use plain HTTP; every other host HTTPS unless this is given)
  --username <name>  user name; the password is read from standard input with --password-stdin, or from
                     ${CREDENTIAL_VARIABLES.password}
  --password-stdin   read the password from standard input (one line)
Credentials may also come from the environment: ${CREDENTIAL_VARIABLES.username} and
${CREDENTIAL_VARIABLES.password}, or ${CREDENTIAL_VARIABLES.token} (a bearer token). They are sent only
when the registry asks for them, and never printed. Variables are read only when Deno grants reading them
(--allow-env=${CREDENTIAL_VARIABLES.username},${CREDENTIAL_VARIABLES.password},${CREDENTIAL_VARIABLES.token}).`;

/** Options of the commands that use the local cache. */
export const CACHE_OPTIONS: OptionSpec = { "--cache-dir": "value" };

/** Help text for {@linkcode CACHE_OPTIONS}. */
export const CACHE_OPTIONS_HELP =
  `  --cache-dir <dir>  the snapshot cache (default: snapvm/oci under Deno's cache directory, DENO_DIR or
                     $XDG_CACHE_HOME/deno or ~/.cache/deno)`;

/** An environment variable's value when Deno grants reading it, without asking; else `undefined`. */
function envIfGranted(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Reads standard input to its end, without its final line break. */
async function readStdinLine(): Promise<string> {
  const text = await new Response(Deno.stdin.readable).text();
  return text.replace(/\r?\n$/, "");
}

/** Transport and credentials from the command line and the environment. */
export async function registryOptions(args: ParsedArgs, command: string): Promise<RegistryOptions> {
  const options: RegistryOptions = { insecure: args.options.has("--insecure") };
  const flagUser = args.options.get("--username");
  const username = typeof flagUser === "string" ? flagUser : envIfGranted(CREDENTIAL_VARIABLES.username);
  let credentials: RegistryCredentials | undefined;
  if (args.options.has("--password-stdin")) {
    if (username === undefined) throw new UsageError("--password-stdin needs --username", command);
    credentials = { username, password: await readStdinLine() };
  } else if (username !== undefined) {
    const password = envIfGranted(CREDENTIAL_VARIABLES.password);
    if (password === undefined) {
      throw new UsageError(
        `a user name needs a password: --password-stdin, or ${CREDENTIAL_VARIABLES.password}`,
        command,
      );
    }
    credentials = { username, password };
  } else {
    const token = envIfGranted(CREDENTIAL_VARIABLES.token);
    if (token !== undefined) credentials = { token };
  }
  if (credentials !== undefined) options.credentials = credentials;
  return options;
}

/** The `--cache-dir` value, if given. */
export function cacheDirOption(args: ParsedArgs): string | undefined {
  const dir = args.options.get("--cache-dir");
  return typeof dir === "string" ? dir : undefined;
}

/** Parses a reference from the command line: a malformed one is a usage error. */
export function referenceArg(text: string, command: string): OciReference {
  try {
    return parseReference(text);
  } catch (e) {
    if (e instanceof OciReferenceError) throw new UsageError(e.message, command);
    throw e;
  }
}

function split(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf("/");
  return i < 0 ? { dir: ".", name: path } : { dir: path.slice(0, i) || "/", name: path.slice(i + 1) };
}

/** Copies `from` to `to` atomically (temporary file in the target directory, then rename), writable. */
async function copyAtomically(from: string, to: string): Promise<void> {
  const { dir, name } = split(to);
  const temp = `${dir}/.${name}.snapvm-tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.copyFile(from, temp);
    // Cached blobs are read-only; the copy belongs to the user.
    await Deno.chmod(temp, 0o644).catch(() => {});
    await Deno.rename(temp, to);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/**
 * Copies a pulled (or imported) snapshot out of the cache to `output`; for a delta, its bases go next to it
 * under the names it records, where the loader looks. A base file already there with the right `blob_hash`
 * is kept; any other file of that name is an error (it is not replaced). Returns the files written.
 */
export async function copyOut(pulled: PulledSnapshot, output: string): Promise<string[]> {
  const { dir } = split(output);
  const written: string[] = [];
  if (pulled.layers.length > 1) {
    // The cache's chain directory holds the bases under their recorded names, beside the top.
    const chainDir = split(pulled.path).dir;
    const top = split(pulled.path).name;
    for await (const entry of Deno.readDir(chainDir)) {
      if (entry.name === top) continue;
      const target = `${dir}/${entry.name}`;
      const source = `${chainDir}/${entry.name}`;
      if (target === output || split(target).name === split(output).name) {
        throw new OperationError(
          `Cannot write ${output}: its base must be stored under that same name (${entry.name}); choose another name`,
        );
      }
      const wanted = (await readSnapshotConfig(source)).blobHash;
      let existing: string | undefined;
      try {
        existing = (await readSnapshotConfig(target)).blobHash;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) existing = "not a valid snapshot";
      }
      if (existing === wanted) continue;
      if (existing !== undefined) {
        throw new OperationError(
          `Cannot write the base ${target}: a different file is there (blob_hash ${existing}, expected ${wanted}); ` +
            "move it, or write the snapshot into another directory",
        );
      }
      await copyAtomically(source, target);
      written.push(target);
    }
  }
  await copyAtomically(pulled.path, output);
  written.push(output);
  return written;
}
