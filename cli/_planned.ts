/**
 * Commands that are named but not implemented yet; each is replaced by a real command in the table.
 *
 * @module
 */
import type { Command } from "./_command.ts";
import { UsageError } from "./_errors.ts";

/** A placeholder command that exits with a usage error saying it is not implemented yet. */
export function planned(name: string, usage: string, summary: string): Command {
  return {
    name,
    summary: `${summary} (not implemented yet)`,
    help: `Usage: snapvm ${name} ${usage}\n\n${summary}. Not implemented yet.`,
    run() {
      return Promise.reject(new UsageError(`${name} is not implemented yet`));
    },
  };
}

/** The planned commands: registry transfer and OCI export/import of snapshots. */
export const PLANNED: readonly Command[] = [
  planned("push", "<file.hls> <registry/repo:tag>", "upload a snapshot to an OCI registry"),
  planned("pull", "<registry/repo:tag> -o <file.hls>", "download a snapshot from an OCI registry"),
  planned("export", "<file.hls> --oci-layout <dir>", "write a snapshot as an OCI image layout"),
  planned("import", "<oci-layout-dir> -o <file.hls>", "read a snapshot from an OCI image layout"),
];
