import assert from "node:assert/strict";
import { runTool, ToolNotFoundError } from "../../_tools/run_tool.ts";

Deno.test("runTool reports a missing tool and a failing one", async () => {
  await assert.rejects(runTool("snapvm-no-such-tool", []), ToolNotFoundError);
  await assert.rejects(runTool(Deno.execPath(), ["no-such-subcommand"]), /no-such-subcommand/);
  assert.match(await runTool(Deno.execPath(), ["--version"]), /^deno /);
});
