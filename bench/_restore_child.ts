/**
 * One round of the restore rows (`_restore.ts`) in a process of its own: `deno run -A _restore_child.ts
 * <runs>` prints the stats of every row as JSON on stdout.
 *
 * @module
 */
import { measureRestores } from "./_restore.ts";

if (import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-restore-" });
  try {
    console.log(JSON.stringify(await measureRestores(Number(Deno.args[0] ?? 200), dir)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
