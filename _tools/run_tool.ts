/**
 * Running the host's build tools (`gcc`, `objcopy`, `nm`) from the build scripts. Build time only; not part
 * of the published package.
 *
 * @module
 */

/** A build tool could not be started because it is not installed. */
export class ToolNotFoundError extends Error {
  /** The tool's name. */
  readonly tool: string;

  /**
   * Names the missing tool.
   *
   * @param tool The program that was not found.
   *
   * @example
   * ```ts
   * import { ToolNotFoundError } from "./run_tool.ts";
   *
   * console.log(new ToolNotFoundError("gcc").message); // "Cannot run gcc: not installed"
   * ```
   */
  constructor(tool: string) {
    super(`Cannot run ${tool}: not installed`);
    this.name = "ToolNotFoundError";
    this.tool = tool;
  }
}

/**
 * Runs a build tool and returns its standard output.
 *
 * @param tool The program, such as `gcc`.
 * @param args Its arguments.
 * @returns Its standard output, decoded.
 * @throws {ToolNotFoundError} If the program is not installed.
 * @throws {Error} If it exits unsuccessfully; the message holds the command and its standard error.
 *
 * @example
 * ```ts
 * import { runTool } from "./run_tool.ts";
 *
 * console.log(await runTool(Deno.execPath(), ["--version"]));
 * ```
 */
export async function runTool(tool: string, args: string[]): Promise<string> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(tool, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ToolNotFoundError(tool);
    throw error;
  }
  if (!result.success) {
    const stderr = new TextDecoder().decode(result.stderr).trim();
    throw new Error(`${tool} ${args.join(" ")} failed:\n${stderr}`);
  }
  return new TextDecoder().decode(result.stdout);
}
