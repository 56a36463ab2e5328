/**
 * Test helpers for the CLI: run it as a real subprocess, and gate tests on gcc the way tests/_kvm.ts gates
 * them on KVM.
 *
 * @module
 */
import { hasHypervisor } from "../_hypervisor.ts";
import { haveGcc } from "../../guest/sdk.ts";

/** `cli/main.ts` of this checkout. */
export const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;

/** Root of this checkout. */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** What a CLI run printed and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A cli/main.ts ...args` in `cwd`, with `input` on standard input if given. */
export async function runCli(
  args: string[],
  cwd: string,
  env?: Record<string, string>,
  input?: string,
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, ...args],
    cwd,
    env,
    stdin: input === undefined ? "null" : "piped", // never an interactive permission prompt
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Whether gcc runs here. */
export const hasGcc: boolean = await haveGcc();

const warned = new Set<string>();

/**
 * Registers a test that needs real things (`kvm`, `gcc`). When one is missing the test is skipped with one
 * loud line, except in CI (`CI=true`), where it fails.
 */
export function needsTest(
  needs: readonly ("kvm" | "gcc")[],
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const missing = needs.filter((n) => (n === "kvm" ? !hasHypervisor : !hasGcc));
  if (missing.length === 0) {
    Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`${missing.join(" and ")} missing in CI: these tests must run there`);
    });
  } else {
    const key = missing.join("+");
    if (!warned.has(key)) {
      console.error(`!!! ${missing.join(" and ")} not found: SKIPPING the CLI tests that need it !!!`);
      warned.add(key);
    }
    Deno.test({ name, ignore: true, fn });
  }
}
