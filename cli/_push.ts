/**
 * `snapvm push <file.hls> <registry>/<repository>[:<tag>]`: upload a snapshot file (a delta with its bases)
 * to an OCI registry.
 *
 * @module
 */
import { DEFAULT_CHUNK_SIZE, pushSnapshotFile } from "../format/oci/mod.ts";
import { formatSize, parseArgs, parseSize } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { referenceArg, REGISTRY_OPTIONS, REGISTRY_OPTIONS_HELP, registryOptions } from "./_registry.ts";
import { requireFile } from "./_target.ts";

const HELP = `Usage: snapvm push <file.hls> <registry>/<repository>[:<tag>] [options]

Uploads a snapshot file to an OCI registry as an image manifest (config: the header as JSON; layer: the
file), tagged <tag> (default latest). A delta file is pushed with its chain of bases, the complete file
first, each a layer: blobs the repository already has are not sent again, so a delta over a pushed base
sends only the delta. Prints the snapshot's reference by digest on stdout (pull it to get exactly these
bytes), and a summary on stderr.
  --base <file>         the delta's base, when it is not next to the delta under its recorded name
  --mount-from <repo>   another repository of the same registry to mount existing blobs from
  --chunk-size <size>   bytes per upload request (default ${formatSize(DEFAULT_CHUNK_SIZE)}; 4k to 256m)

${REGISTRY_OPTIONS_HELP}`;

/** `snapvm push`. */
export const pushCommand: Command = {
  name: "push",
  summary: "upload a snapshot file (a delta with its bases) to an OCI registry",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(
      tokens,
      { ...REGISTRY_OPTIONS, "--base": "value", "--mount-from": "value", "--chunk-size": "value" },
      "push",
    );
    if (args.positionals.length !== 2) {
      throw new UsageError("expected a snapshot file and a reference (registry/repository:tag)", "push");
    }
    const [path, text] = args.positionals;
    const reference = referenceArg(text, "push");
    const chunk = args.options.get("--chunk-size");
    const chunkSize = typeof chunk === "string" ? parseSize(chunk, "--chunk-size") : undefined;
    if (chunkSize !== undefined && (chunkSize < 4096 || chunkSize > 256 * 1024 * 1024)) {
      throw new UsageError(`--chunk-size is ${chunk}, expected 4k to 256m`, "push");
    }
    const base = args.options.get("--base");
    const mountFrom = args.options.get("--mount-from");
    await requireFile(path);
    const pushed = await pushSnapshotFile(path, reference, {
      ...await registryOptions(args, "push"),
      chunkSize,
      mountFrom: typeof mountFrom === "string" ? mountFrom : undefined,
      resolveBase: typeof base === "string" ? (b) => (b.delta === path ? base : undefined) : undefined,
    });
    console.log(pushed.reference);
    const layers = pushed.blobs.slice(0, -1);
    const outcomes = layers.map((b) => b.outcome).join(", ");
    console.error(
      `pushed ${path} as ${reference.registry}/${reference.repository}:${pushed.tag}: ${layers.length} ` +
        `layer${layers.length === 1 ? "" : "s"} (${outcomes}), ${formatSize(pushed.bytesSent)} sent`,
    );
    return EXIT.ok;
  },
};
