/**
 * Shared by the tests that rebuild committed generated modules (machine code and shared objects built from C
 * with gcc) and compare them byte for byte: they skip with one loud line where gcc is missing or is another
 * toolchain than the one the module was built with, and fail instead in CI (`CI=true`).
 */
import { haveGcc } from "../guest/sdk.ts";

/** Skips loudly (returns false) without gcc; throws in CI. */
export async function gccOrSkip(what: string): Promise<boolean> {
  if (await haveGcc()) return true;
  if (Deno.env.get("CI") === "true") throw new Error("gcc is missing");
  console.error(`!!! gcc not found: SKIPPING ${what} !!!`);
  return false;
}

/**
 * True when a rebuild used the committed module's toolchain; otherwise skips loudly (another compiler gives
 * other, equally valid bytes: only the same toolchain can be compared), or throws in CI.
 */
export function sameToolchain(rebuilt: string, committed: string, what: string): boolean {
  if (rebuilt === committed) return true;
  const message = `toolchain is "${rebuilt}", ${what} was built with "${committed}"`;
  if (Deno.env.get("CI") === "true") throw new Error(message);
  console.error(`!!! ${message}: SKIPPING the byte-for-byte comparison !!!`);
  return false;
}
