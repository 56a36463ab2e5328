/**
 * The shape of a CLI command: adding a command is one entry in `main.ts`'s table.
 *
 * @module
 */

/** One `snapvm <name>` command. */
export interface Command {
  /** The word after `snapvm`. */
  readonly name: string;
  /** One line for `snapvm --help`. */
  readonly summary: string;
  /** The full `snapvm <name> --help` text, starting with the usage line. */
  readonly help: string;
  /** Runs the command with the tokens after its name (without `--help`/`--debug`); returns the exit code. */
  run(args: string[]): Promise<number>;
}
