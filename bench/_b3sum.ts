/**
 * The `b3sum` CLI (the official Rust BLAKE3 implementation), the baseline of every BLAKE3 measurement.
 *
 * @module
 */

/** Runs `b3sum --no-names ...args` and returns its output (the digest in hex); throws when it fails. */
export async function b3sum(args: readonly string[]): Promise<string> {
  const output = await new Deno.Command("b3sum", { args: ["--no-names", ...args], stdout: "piped" }).output();
  if (!output.success) throw new Error(`b3sum ${args.join(" ")} failed`);
  return new TextDecoder().decode(output.stdout).trim();
}

/** Whether `b3sum` is on PATH. */
export async function hasB3sum(): Promise<boolean> {
  try {
    return (await new Deno.Command("b3sum", { args: ["--version"], stdout: "null" }).output()).success;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
