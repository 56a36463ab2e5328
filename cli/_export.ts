/**
 * `snapvm export <file.hls> --oci-layout <dir>`: write a snapshot (a delta with its bases) into an OCI
 * image-layout directory.
 *
 * @module
 */
import { exportOciLayout } from "../format/oci/mod.ts";
import { parseArgs } from "./_args.ts";
import type { Command } from "./_command.ts";
import { EXIT, UsageError } from "./_errors.ts";
import { requireFile } from "./_target.ts";

const HELP = `Usage: snapvm export <file.hls> --oci-layout <dir> [--tag <tag>] [--base <file>]

Writes the snapshot into an OCI image-layout directory (oci-layout, index.json, blobs/sha256/…), with the
same manifest and digest a push produces, for air-gapped transfer or tools that read layouts. The directory
is created if needed; other tags in it are kept. A delta is written with its chain of bases. Prints
<dir>@<manifest digest> on stdout.
  --oci-layout <dir>   the layout directory (required)
  --tag <tag>          the tag in index.json (default latest)
  --base <file>        the delta's base, when it is not next to the delta under its recorded name`;

/** `snapvm export`. */
export const exportCommand: Command = {
  name: "export",
  summary: "write a snapshot file into an OCI image-layout directory",
  help: HELP,
  async run(tokens) {
    const args = parseArgs(
      tokens,
      { "--oci-layout": "value", "--tag": "value", "--base": "value" },
      "export",
    );
    const dir = args.options.get("--oci-layout");
    if (typeof dir !== "string") throw new UsageError("--oci-layout <dir> is required", "export");
    if (args.positionals.length !== 1) throw new UsageError("expected exactly one snapshot file", "export");
    const path = args.positionals[0];
    const tag = args.options.get("--tag");
    const base = args.options.get("--base");
    await requireFile(path);
    const exported = await exportOciLayout(path, dir, typeof tag === "string" ? tag : "latest", {
      resolveBase: typeof base === "string" ? (b) => (b.delta === path ? base : undefined) : undefined,
    });
    console.log(`${dir}@${exported.digest}`);
    console.error(
      `exported ${path} to ${dir} as ${exported.tag}: ${exported.manifest.layers.length} layer${
        exported.manifest.layers.length === 1 ? "" : "s"
      }`,
    );
    return EXIT.ok;
  },
};
