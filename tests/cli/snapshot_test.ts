// `snapvm snapshot` with --base (a delta), --working-set and --no-binary, and what `snapvm inspect` shows
// of them (human and --json): the binary's path and entry point, the delta's base and chain, the working set.
import assert from "node:assert/strict";
import { EXIT } from "../../cli/_errors.ts";
import { needsTest, ROOT, runCli } from "./_cli.ts";
import { parseElf } from "../../vm/machine/elf.ts";

const GUEST = `${ROOT}guest/bin/testguest`;
const ENTRY = `0x${parseElf(Deno.readFileSync(GUEST)).entry.toString(16)}`;

needsTest(
  ["kvm"],
  "snapshot --base, --working-set, --no-binary; inspect shows binary, chain, working set",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const snapshot = (...args: string[]) => runCli(["snapshot", GUEST, "--heap", "4m", ...args], dir);
      const inspect = async (file: string) => {
        const json = await runCli(["inspect", file, "--json"], dir);
        assert.equal(json.code, 0, json.stderr);
        const human = await runCli(["inspect", file], dir);
        assert.equal(human.code, 0, human.stderr);
        return { info: JSON.parse(json.stdout), text: human.stdout };
      };

      // A complete file records the guest binary (path and ELF entry point), and no working set.
      const base = await snapshot("-o", "base.hls", "--call", "AddToStatic", "1");
      assert.equal(base.code, 0, base.stderr);
      assert.match(base.stdout, /wrote base\.hls: .*, 1 warm-up call\n$/);
      const a = await inspect("base.hls");
      assert.deepEqual(a.info.binary, { path: GUEST, entry: ENTRY });
      assert.equal(a.info.base, null);
      assert.deepEqual(a.info.chain, []);
      assert.equal(a.info.workingSet, null);
      assert.match(a.text, new RegExp(`\\nbinary: "${GUEST}" \\(entry ${ENTRY}\\)\\n`));
      assert.match(a.text, /\ndelta: no \(a complete snapshot\)\nworking set: none\n/);

      // A delta over it, with a working set recorded from the same calls made again.
      const delta = await snapshot(
        "-o",
        "delta.hls",
        "--base",
        "base.hls",
        "--working-set",
        "--call",
        "AddToStatic",
        "5",
        "--call",
        "Echo",
        "hi",
      );
      assert.equal(delta.code, 0, delta.stderr);
      assert.match(
        delta.stdout,
        /wrote delta\.hls: .*, 2 warm-up calls, a delta over base\.hls storing \d+ pages? in \d+ runs?, working set \d+ pages in \d+ runs?\n$/,
      );
      const d = await inspect("delta.hls");
      assert.equal(d.info.formatVersion, 2);
      assert.equal(d.info.base.fileName, "base.hls");
      assert.equal(d.info.base.chainDepth, 1);
      assert.equal(d.info.base.blobHash, a.info.blobHash);
      assert.deepEqual(d.info.chain, [{ path: "./base.hls", blobHash: a.info.blobHash, chainDepth: 0 }]);
      assert.ok(d.info.workingSet.pages > 0 && d.info.workingSet.runs > 0);
      assert.match(
        d.text,
        new RegExp(
          `\\ndelta: over base\\.hls \\(blob hash ${a.info.blobHash}\\), chain depth 1, stores \\d+ pages? in \\d+ runs?\\n` +
            `chain:\\n  \\./base\\.hls \\(depth 0, blob hash ${a.info.blobHash}\\)\\n` +
            `working set: ${d.info.workingSet.pages} pages in ${d.info.workingSet.runs} runs? \\(`,
        ),
      );
      const run = await runCli(["run", "delta.hls", "GetStatic"], dir);
      assert.equal(run.stdout, "5\n", run.stderr);
      // The calls were made again for the working set, on a copy: the saved state is that of the first calls.
      assert.equal((await runCli(["verify", "delta.hls"], dir)).code, 0);

      // A broken chain: inspect says why (and that it does not load), run refuses.
      await Deno.rename(`${dir}/base.hls`, `${dir}/moved.hls`);
      const broken = await inspect("delta.hls");
      assert.equal(broken.info.compatible, false);
      assert.match(broken.info.chain[0].problem, /^Cannot load snapshot: base is .*base\.hls/);
      assert.match(broken.text, /loads on this host: no\n/);
      assert.match(
        broken.text,
        /\n {2}\.\/base\.hls \(depth 0, blob hash [0-9a-f]{64}\): Cannot load snapshot: /,
      );
      assert.equal((await runCli(["run", "delta.hls", "GetStatic"], dir)).code, EXIT.failed);
      await Deno.rename(`${dir}/moved.hls`, `${dir}/base.hls`);

      // --no-binary: nothing else needs version 2, so the file is version 1.
      const plain = await snapshot("-o", "plain.hls", "--no-binary");
      assert.equal(plain.code, 0, plain.stderr);
      const p = await inspect("plain.hls");
      assert.equal(p.info.formatVersion, 1);
      assert.equal(p.info.binary, null);
      assert.match(p.text, /\nbinary: not recorded\n/);

      // A guest given as a URL is read as bytes: no path to record.
      const example = await runCli(["snapshot", "example:testguest", "-o", "example.hls"], dir);
      assert.equal(example.code, 0, example.stderr);
      assert.equal((await inspect("example.hls")).info.binary, null);

      // Usage and operation errors.
      const missing = await snapshot("-o", "x.hls", "--base", "missing.hls");
      assert.equal(missing.code, EXIT.failed);
      assert.match(missing.stderr, /^snapvm: Cannot read missing\.hls: no such file\n$/);
      const self = await snapshot("-o", "base.hls", "--base", "base.hls");
      assert.equal(self.code, EXIT.failed);
      assert.match(self.stderr, /a delta cannot be its own base/);
      const value = await snapshot("-o", "x.hls", "--no-binary=1");
      assert.equal(value.code, EXIT.usage);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
