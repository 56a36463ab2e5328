/**
 * Snapshots that are not mappable files: `Snapshot.fromBytes` (a snapshot embedded in a `deno compile`
 * executable) and the loaders' fallback for paths that can be read but not mapped (a FIFO, devices; the
 * corruption cases run through `fromBytes` in corruption_test.ts). Both copy the bytes into a sealed
 * memfd and then check exactly what `fromFile` checks.
 */
import assert from "node:assert/strict";
import {
  GuestBinaryError,
  MultiUseSandbox,
  Snapshot,
  SnapshotFormatError,
  UninitializedSandbox,
} from "../../../mod.ts";
import { MAX_SNAPSHOT_FILE_SIZE } from "../../../format/constants.ts";
import { live } from "../../../vm/snapshot.ts";
import { backingFd } from "../../../vm/memory/posix/os_memory.ts";
import { vmTest } from "../../_hypervisor.ts";
import { assertFormatError, counts, hostFns, TESTGUEST, testguest, withTempDir } from "./_util.ts";

const MIB = 1024 * 1024;

/** A Call snapshot of the test guest with `AddToStatic(value)` made, written to `path`. */
async function save(path: string, value: number, heapSize = 16 * MIB): Promise<void> {
  using sbx = testguest({ heapSize }).evolve();
  sbx.call("AddToStatic", value);
  using snap = sbx.snapshot();
  await snap.toFile(path);
}

function staticOf(snap: Snapshot): number {
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  return sbx.call("GetStatic") as number;
}

/** What the snapshot's blob is backed by, as /proc/self/fd names it. */
function backingOf(snap: Snapshot): { link: string; stored: number } {
  const fd = backingFd(live(snap).blob.backing);
  return {
    link: Deno.readLinkSync(`/proc/self/fd/${fd}`),
    stored: Deno.statSync(`/proc/self/fd/${fd}`).blocks! * 512,
  };
}

vmTest(
  "fromBytes loads a snapshot file's bytes into a sparse sealed memfd, checked like fromFile",
  async () => {
    await withTempDir(async (dir) => {
      await save(`${dir}/s.hls`, 41);
      const bytes = Deno.readFileSync(`${dir}/s.hls`);
      using snap = Snapshot.fromBytes(bytes);
      bytes.fill(0); // the snapshot owns a copy
      assert.equal(staticOf(snap), 41);
      assert.equal(snap.entrypoint, "Call");
      assert.deepEqual(snap.binary, {
        path: TESTGUEST,
        entry: Snapshot.fromFile(`${dir}/s.hls`).binary!.entry,
      });
      const { link, stored } = backingOf(snap);
      assert.match(link, /^\/memfd:snapvm-file/);
      // The 16 MiB heap is mostly zeros: only chunks with data are copied.
      assert.ok(stored < 4 * MIB, `${stored} bytes stored for a ${snap.memorySize}-byte blob`);
      // Files written from it are the same file.
      await snap.toFile(`${dir}/again.hls`);
      assert.deepEqual(Deno.readFileSync(`${dir}/again.hls`), Deno.readFileSync(`${dir}/s.hls`));
      // A sandbox of it restores and snapshots as any other.
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
      sbx.call("AddToStatic", 1);
      sbx.restore(snap);
      assert.equal(sbx.call("GetStatic"), 41);

      assert.throws(() => Snapshot.fromBytes("not bytes" as unknown as Uint8Array), TypeError);
      assertFormatError(() => Snapshot.fromBytes(new Uint8Array(0)), "Truncated");
      const e = assertFormatError(
        () => Snapshot.fromBytes(new Uint8Array(MAX_SNAPSHOT_FILE_SIZE + 1)),
        "InvalidField",
        "file size",
      );
      assert.match(e.message, /MAX_SNAPSHOT_FILE_SIZE/);
    });
  },
);

vmTest(
  "fromBytes of a delta needs resolveBase: BaseNotFound without, checked against blob_hash with",
  async () => {
    await withTempDir(async (dir) => {
      await save(`${dir}/base.hls`, 1);
      {
        using base = Snapshot.fromFile(`${dir}/base.hls`);
        using sbx = MultiUseSandbox.fromSnapshot(base, hostFns());
        sbx.call("AddToStatic", 9);
        using snap = sbx.snapshot();
        await snap.toFile(`${dir}/delta.hls`, { base: `${dir}/base.hls` });
        await snap.toFile(`${dir}/other.hls`);
      }
      const delta = Deno.readFileSync(`${dir}/delta.hls`);
      const e = assertFormatError(() => Snapshot.fromBytes(delta), "BaseNotFound", "base");
      assert.match(e.message, /resolveBase/);
      assertFormatError(
        () => Snapshot.fromBytes(delta, { resolveBase: () => undefined }),
        "BaseNotFound",
        "base",
      );
      using snap = Snapshot.fromBytes(delta, { resolveBase: () => `${dir}/base.hls` });
      assert.equal(staticOf(snap), 10);
      assertFormatError(
        () => Snapshot.fromBytes(delta, { resolveBase: () => `${dir}/other.hls` }),
        "BaseMismatch",
        "base.blob_hash",
      );
    });
  },
);

/**
 * Writes `file` into the FIFO `fifo` from a child process that holds the FIFO open (read-write, so its
 * open never waits) before it says "ready", and closes it after the last byte: the reader sees the whole
 * file, then the end. The file must be larger than a pipe (64 KiB): the writer can then only finish, and
 * close the FIFO (which discards whatever nobody has read), once the reader has opened it.
 */
async function feedFifo(fifo: string, file: string): Promise<Deno.ChildProcess> {
  assert.ok(Deno.statSync(file).size > 64 * 1024, "a FIFO feed must not fit in the pipe");
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec 3<>"$1"; echo ready; cat "$2" >&3; exec 3>&-', "sh", fifo, file],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "ready");
  await reader.cancel(); // nothing else comes on stdout
  return child;
}

vmTest(
  "a FIFO is read whole, then checked like a file: fromFile (path or file: URL), inspectFile",
  async () => {
    await withTempDir(async (dir) => {
      await save(`${dir}/s.hls`, 7);
      const fifo = `${dir}/fifo`;
      assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
      const before = counts();
      for (
        const [what, load] of [
          ["fromFile", () => Snapshot.fromFile(fifo)],
          ["fromFile(URL)", () => Snapshot.fromFile(new URL(`file://${fifo}`))],
          ["fromFileUnchecked", () => Snapshot.fromFileUnchecked(fifo)],
          ["fromFileCached", () => Snapshot.fromFileCached(fifo)],
        ] as const
      ) {
        const child = await feedFifo(fifo, `${dir}/s.hls`);
        using snap = load();
        assert.ok((await child.status).success, what);
        assert.match(backingOf(snap).link, /^\/memfd:snapvm-file/, what);
        assert.equal(staticOf(snap), 7, what);
      }
      const child = await feedFifo(fifo, `${dir}/s.hls`);
      const info = Snapshot.inspectFile(fifo);
      await child.status;
      assert.equal(info.compatible, true);
      assert.equal(info.blobHash, Snapshot.inspectFile(`${dir}/s.hls`).blobHash);

      // Damage arrives through a FIFO as through a file.
      const damaged = Deno.readFileSync(`${dir}/s.hls`);
      damaged[damaged.length - 4097] ^= 1; // the blob's last byte
      Deno.writeFileSync(`${dir}/bad.hls`, damaged);
      const bad = await feedFifo(fifo, `${dir}/bad.hls`);
      assertFormatError(() => Snapshot.fromFile(fifo), "BlobHashMismatch", "blob_hash");
      await bad.status;

      // A FIFO nobody writes to is empty, at once: opening never waits.
      assertFormatError(() => Snapshot.fromFile(fifo), "Truncated");
      assert.ok(counts().fds <= before.fds, "descriptors leaked");
    });
  },
);

vmTest("devices and sockets: read like files or refused, never mapped or waited on", async () => {
  await withTempDir((dir) => {
    // /dev/null is empty; /dev/zero never ends, but its first bytes are not a snapshot's, so reading stops.
    assertFormatError(() => Snapshot.fromFile("/dev/null"), "Truncated");
    assertFormatError(() => Snapshot.fromFile("/dev/zero"), "BadMagic", "magic");
    assertFormatError(() => Snapshot.fromFileUnchecked("/dev/urandom"), "BadMagic", "magic");
    assertFormatError(() => Snapshot.inspectFile("/dev/zero"), "BadMagic", "magic");
    // A socket cannot be opened at all.
    const socket = `${dir}/socket`;
    const listener = Deno.listen({ transport: "unix", path: socket });
    try {
      const e = assertFormatError(() => Snapshot.fromFile(socket), "InvalidField", "file type");
      assert.ok(e instanceof SnapshotFormatError);
    } finally {
      listener.close();
    }
    // Missing paths and directories keep Deno's own errors.
    assert.throws(() => Snapshot.fromFile(`${dir}/missing.hls`), Deno.errors.NotFound);
    assert.throws(() => Snapshot.fromFile(dir), Deno.errors.IsADirectory);
  });
});

vmTest(
  "guest binaries from devices and FIFOs: read whole up to the largest image, then refused",
  async () => {
    await withTempDir(async (dir) => {
      assert.throws(() => new UninitializedSandbox("/dev/zero"), (e: unknown) => {
        assert.ok(e instanceof GuestBinaryError, String(e));
        assert.match(e.message, /larger than 67108864 bytes \(MAX_IMAGE_SIZE/);
        return true;
      });
      assert.throws(() => new UninitializedSandbox("/dev/null"), GuestBinaryError);
      // A guest written into a FIFO, named by a file: URL, runs (and its path is recorded as given).
      const fifo = `${dir}/guest`;
      assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
      // Padded past the pipe's 64 KiB: the feeder's write then cannot finish (and close the FIFO, which
      // discards what nobody has read) before this side has opened it.
      const padded = new Uint8Array(256 * 1024);
      padded.set(Deno.readFileSync(TESTGUEST));
      Deno.writeFileSync(`${dir}/padded`, padded);
      const child = await feedFifo(fifo, `${dir}/padded`);
      const u = new UninitializedSandbox(new URL(`file://${fifo}`), {}, hostFns());
      await child.status;
      using sbx = u.evolve();
      assert.equal(sbx.call("Echo", "fifo"), "fifo");
      assert.equal(u.binaryPath, fifo);
    });
  },
);
