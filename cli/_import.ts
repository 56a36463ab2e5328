/**
 * `snapvm import <oci-layout-dir> -o <file.hls>`: read a snapshot from an OCI image-layout directory.
 *
 * @module
 */
import { importOciLayout } from "../format/oci/mod.ts";
import { parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { CACHE_OPTIONS, CACHE_OPTIONS_HELP, cacheDirOption, copyOut } from "./_registry.ts";

const HELP =
  `Usage: snapvm import <oci-layout-dir> [-o <file.hls>] [--tag <tag>|--digest <sha256:…>] [--cache-dir <dir>]

Reads a snapshot from an OCI image-layout directory (as written by 'snapvm export'), verifying every blob
as a pull does, into the local cache, and copies it to <file.hls> (a delta's bases next to it, under the
names it records). Prints the file written, or without -o the cached path, on stdout.
  -o <file.hls>        the snapshot file to write
  --tag <tag>          the tag in index.json (default latest)
  --digest <sha256:…>  the manifest by digest instead of a tag
${CACHE_OPTIONS_HELP}`;

/** `snapvm import`. */
export const importCommand: Command = {
  name: "import",
  summary: "read a snapshot from an OCI image-layout directory into a file",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(
      tokens,
      { ...CACHE_OPTIONS, "-o": "value", "--tag": "value", "--digest": "value" },
      "import",
    );
    if (args.positionals.length !== 1) {
      throw new UsageError("expected exactly one layout directory", "import");
    }
    const tag = args.options.get("--tag");
    const digest = args.options.get("--digest");
    if (typeof tag === "string" && typeof digest === "string") {
      throw new UsageError("give --tag or --digest, not both", "import");
    }
    if (typeof digest === "string" && !/^sha256:[0-9a-f]{64}$/.test(digest)) {
      throw new UsageError(`--digest is "${digest}", expected sha256: and 64 hex digits`, "import");
    }
    const ref = typeof digest === "string" ? digest : typeof tag === "string" ? tag : "latest";
    const imported = await importOciLayout(args.positionals[0], ref, { cacheDir: cacheDirOption(args) });
    const output = args.options.get("-o");
    if (typeof output === "string") {
      const written = await copyOut(imported, output);
      console.log(output);
      console.error(`imported ${imported.reference}; wrote ${written.join(", ")}`);
    } else {
      console.log(imported.path);
      console.error(`imported ${imported.reference}`);
    }
    return EXIT.ok;
  },
};
