/**
 * `snapvm inspect <file> [--json]`: describe a snapshot file without loading it.
 *
 * @module
 */
import { Snapshot, type SnapshotFileInspection, type SnapshotInspection } from "../mod.ts";
import { formatCount, formatSize, parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { requireFile } from "./_target.ts";

const HELP = `Usage: snapvm inspect <file.hls> [--json]

Reads only the header, the host functions and the sections of a snapshot (maps nothing, checks header_hash
but not the memory blob: use 'snapvm verify' for that) and prints every header field, whether it loads on
this host and why not, the host functions, both hashes, the guest binary it records (path and entry point),
for a delta its base and the chain of bases as the loader finds them, and the working set's size.
  --json   print the description as JSON (u64 values beyond 2^53 as decimal strings; binary, base, chain,
           workingSet included)
Exit code 0 when the file could be described, even if it does not load here.`;

function size(info: SnapshotInspection, field: keyof SnapshotInspection["header"]): string {
  const v = info.header[field];
  return typeof v === "number" ? formatSize(v) : String(v);
}

/** The sections and the chain of bases, one line each (and a line per base). */
function sections(info: SnapshotFileInspection): string[] {
  const lines = [
    info.binary === null
      ? "binary: not recorded"
      : `binary: ${JSON.stringify(info.binary.path)} (entry ${info.binary.entry})`,
  ];
  if (info.base === null) lines.push("delta: no (a complete snapshot)");
  else {
    lines.push(
      `delta: over ${info.base.fileName} (blob hash ${info.base.blobHash}), chain depth ${info.base.chainDepth}, ` +
        `stores ${formatCount(info.base.pages, "page")} in ${formatCount(info.base.runs, "run")}`,
      "chain:",
      ...info.chain.map((link) =>
        `  ${link.path} (depth ${link.chainDepth}, blob hash ${link.blobHash})` +
        (link.problem === undefined ? "" : `: ${link.problem}`)
      ),
    );
  }
  lines.push(
    info.workingSet === null
      ? "working set: none"
      : `working set: ${formatCount(info.workingSet.pages, "page")} in ${
        formatCount(info.workingSet.runs, "run")
      } (${formatSize(info.workingSet.pages * 4096)})`,
  );
  return lines;
}

function human(path: string, info: SnapshotFileInspection): string {
  const lines = [
    `${path}: snapvm snapshot, format ${info.formatVersion}, ABI ${info.abiVersion}, ${info.arch}/${info.hypervisor}, ` +
    `entry point ${info.entrypoint}`,
    info.compatible
      ? "loads on this host: yes"
      : `loads on this host: no\n${info.incompatibilities.map((i) => `  - ${i.message}`).join("\n")}`,
    `memory: ${size(info, "memory_size")} (heap ${size(info, "heap_size")}, code ${
      size(info, "code_size")
    }, ` +
    `stack and buffers ${size(info, "scratch_size")}: input ${size(info, "input_data_size")}, output ${
      size(info, "output_data_size")
    })`,
    `host functions: ${info.hostFunctions.length === 0 ? "none" : info.hostFunctions.join(", ")}`,
    ...sections(info),
    `header hash: ${info.headerHash}`,
    `blob hash:   ${info.blobHash}`,
    "header:",
    ...Object.entries(info.header).map(([k, v]) => `  ${k.padEnd(22)} ${v}`),
  ];
  return lines.join("\n");
}

/** `snapvm inspect`. */
export const inspectCommand: Command = {
  name: "inspect",
  summary: "describe a snapshot file (header, compatibility, host functions, hashes)",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, { "--json": "flag" }, "inspect");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one snapshot file", "inspect");
    const path = args.positionals[0];
    await requireFile(path);
    const info = Snapshot.inspectFile(path);
    console.log(args.options.has("--json") ? JSON.stringify(info, null, 2) : human(path, info));
    return EXIT.ok;
  },
};
