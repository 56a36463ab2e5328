/**
 * `snapvm verify <file>`: load a snapshot with every check, including the hash of the whole memory blob.
 *
 * @module
 */
import { blake3Backend, Snapshot } from "../mod.ts";
import { formatSize, parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { requireFile } from "./_target.ts";

const HELP = `Usage: snapvm verify <file.hls>

Loads the snapshot as Snapshot.fromFile does: checks the header, the layout, the special registers,
header_hash and the BLAKE3 hash of the whole memory blob, and whether it loads on this host. Runs no guest
code and needs no KVM.
Exit code 0 when the file is good, 1 (with the reason on stderr) when it is not.`;

/** `snapvm verify`. */
export const verifyCommand: Command = {
  name: "verify",
  summary: "check a snapshot file completely (hashes, layout, host); exit 0 good, 1 bad",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, {}, "verify");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one snapshot file", "verify");
    const path = args.positionals[0];
    await requireFile(path);
    const t0 = performance.now();
    using snap = Snapshot.fromFile(path);
    const ms = performance.now() - t0;
    console.log(
      `ok: ${path} (${formatSize(snap.memorySize)} of guest memory, entry point ${snap.entrypoint}; ` +
        `verified in ${ms.toFixed(1)} ms with ${blake3Backend()} BLAKE3)`,
    );
    return EXIT.ok;
  },
};
