/**
 * The package as a consumer gets it: exactly the files `deno publish --dry-run` lists, copied out of the
 * checkout and served over real HTTP on 127.0.0.1. Shared by the consumer test and the README test.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT } from "../cli/_cli.ts";

/** The files of `deno publish --dry-run`, relative to the repository root. */
export async function publishedFiles(): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `deno publish --dry-run failed:\n${text}`);
  const root = new URL(ROOT, "file:///").href;
  const files = [...text.matchAll(/^\s+(file:\/\/\S+) \([^)]*\)$/gm)]
    .map((m) => decodeURIComponent(m[1]).slice(root.length))
    .filter((f) => f !== ".git"); // a git worktree's .git is a file; JSR ignores it
  assert.ok(files.includes("mod.ts") && files.includes("cli/main.ts"), text);
  return files;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ts: "application/typescript",
  json: "application/json",
  md: "text/markdown",
};

/** What a `deno` subprocess printed and its exit code. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno <args>` in `cwd` without a terminal (so Deno never prompts for a permission). */
export async function deno(args: string[], cwd: string, env: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** The published file set, staged in a temporary folder and served over HTTP on 127.0.0.1. */
export interface ServedPackage extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: the package root. */
  readonly base: string;
  /** `127.0.0.1:<port>`, for `--allow-import` and `--allow-net`. */
  readonly host: string;
  /** A temporary folder with `work/` and `scratch/` (the consumer's TMPDIR), removed on dispose. */
  readonly tmp: string;
  /** Files the server handed out. */
  readonly served: ReadonlySet<string>;
  /** Paths asked for that are not in the published set. */
  readonly refused: ReadonlySet<string>;
}

/**
 * Stages the published files and serves them. Disposing stops the server, removes the temporary folder and
 * what the consumer processes put into Deno's module cache for this server (a new port every run, so the
 * entries would only pile up).
 */
export async function servePackage(): Promise<ServedPackage> {
  const files = await publishedFiles();
  const tmp = await Deno.makeTempDir({ prefix: "snapvm-consumer-" });
  const pkg = `${tmp}/package`;
  await Deno.mkdir(`${tmp}/work`);
  await Deno.mkdir(`${tmp}/scratch`);
  for (const f of files) {
    await Deno.mkdir(`${pkg}/${f}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.copyFile(`${ROOT}${f}`, `${pkg}/${f}`);
  }
  const served = new Set<string>();
  const refused = new Set<string>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).slice(1);
    if (!files.includes(path)) {
      refused.add(path);
      return new Response("not published", { status: 404 });
    }
    served.add(path);
    const type = CONTENT_TYPES[path.split(".").pop()!] ?? "application/octet-stream";
    return new Response(await Deno.readFile(`${pkg}/${path}`), { headers: { "content-type": type } });
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    base: `http://${host}`,
    host,
    tmp,
    served,
    refused,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["info", "--json"],
        stdout: "piped",
        stderr: "null",
      }).output();
      const cache = JSON.parse(new TextDecoder().decode(out.stdout)).modulesCache;
      if (typeof cache === "string") {
        await Deno.remove(`${cache}/http/127.0.0.1_PORT${server.addr.port}`, { recursive: true })
          .catch(() => {});
      }
    },
  };
}
