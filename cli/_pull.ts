/**
 * `snapvm pull <reference> [-o <file.hls>]`: download a snapshot into the local cache, and optionally copy it
 * out.
 *
 * @module
 */
import { pullSnapshotFile } from "../format/oci/mod.ts";
import { formatSize, parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import {
  CACHE_OPTIONS,
  CACHE_OPTIONS_HELP,
  cacheDirOption,
  copyOut,
  referenceArg,
  REGISTRY_OPTIONS,
  REGISTRY_OPTIONS_HELP,
  registryOptions,
} from "./_registry.ts";

const HELP = `Usage: snapvm pull <registry>/<repository>[:<tag>|@sha256:…] [-o <file.hls>] [options]

Downloads a snapshot into the local cache, verifying the SHA-256 of every blob and that its layers form a
valid snapshot (a delta comes with its bases), and prints the cached file's path on stdout: load it with
'snapvm run <path> …' or Snapshot.fromFileCached. A snapshot already in the cache is not downloaded again
(by tag, only its manifest is read; by digest, nothing). Corrupt content is an error and nothing is cached.
  -o <file.hls>   also copy the snapshot to <file.hls> (a delta's bases next to it, under the names it
                  records; an existing file of such a name is kept only if it is that base) and print it
${CACHE_OPTIONS_HELP}

${REGISTRY_OPTIONS_HELP}`;

/** `snapvm pull`. */
export const pullCommand: Command = {
  name: "pull",
  summary: "download a snapshot from an OCI registry into the cache (or to a file with -o)",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(tokens, { ...REGISTRY_OPTIONS, ...CACHE_OPTIONS, "-o": "value" }, "pull");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one reference", "pull");
    const reference = referenceArg(args.positionals[0], "pull");
    const output = args.options.get("-o");
    const pulled = await pullSnapshotFile(reference, {
      ...await registryOptions(args, "pull"),
      cacheDir: cacheDirOption(args),
    });
    const fresh = pulled.layers.filter((l) => l.transferred).length;
    const summary = `pulled ${pulled.reference}: ${pulled.layers.length} layer${
      pulled.layers.length === 1 ? "" : "s"
    } (${fresh} downloaded), ${formatSize(pulled.bytesReceived)} received`;
    if (typeof output === "string") {
      const written = await copyOut(pulled, output);
      console.log(output);
      console.error(`${summary}; wrote ${written.join(", ")}`);
    } else {
      console.log(pulled.path);
      console.error(summary);
    }
    return EXIT.ok;
  },
};
