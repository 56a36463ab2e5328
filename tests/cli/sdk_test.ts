import assert from "node:assert/strict";
import {
  buildGuest,
  exampleGuestUrl,
  gccInstallHint,
  GccNotFoundError,
  GuestBuildError,
  loadGuest,
  PackageFileError,
  SDK_FILES,
  writeSdk,
} from "../../guest/sdk.ts";
import { MAX_IMAGE_SIZE } from "../../vm/machine/elf.ts";
import { needsTest, ROOT } from "./_cli.ts";

Deno.test("SDK_FILES lists exactly the header, runtime and linker script of guest/", () => {
  const onDisk = ["link.ld"];
  for (const dir of ["include", "runtime"]) {
    for (const e of Deno.readDirSync(`${ROOT}guest/${dir}`)) if (e.isFile) onDisk.push(`${dir}/${e.name}`);
  }
  assert.deepEqual([...SDK_FILES].sort(), onDisk.sort());
});

Deno.test("writeSdk copies the SDK files byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const written = await writeSdk(dir);
    assert.equal(written.length, SDK_FILES.length);
    for (const f of SDK_FILES) {
      assert.deepEqual(await Deno.readFile(`${dir}/${f}`), await Deno.readFile(`${ROOT}guest/${f}`), f);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gccInstallHint names the distribution's package manager", () => {
  assert.equal(gccInstallHint('PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n'), "apt-get install gcc");
  assert.equal(gccInstallHint("ID=ubuntu\nID_LIKE=debian\n"), "apt-get install gcc");
  assert.equal(gccInstallHint('ID="rocky"\nID_LIKE="rhel centos fedora"\n'), "dnf install gcc");
  assert.equal(gccInstallHint("ID=alpine\n"), "apk add gcc");
  assert.equal(gccInstallHint('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n'), "zypper install gcc");
  const generic = gccInstallHint("ID=plan9\n");
  assert.match(generic, /Debian\/Ubuntu: apt-get install gcc; Fedora\/RHEL: dnf install gcc/);
});

Deno.test("exampleGuestUrl points at the shipped binaries", () => {
  assert.equal(exampleGuestUrl("hello").pathname, `${ROOT}guest/bin/hello`);
  assert.equal(exampleGuestUrl("testguest").pathname, `${ROOT}guest/bin/testguest`);
  assert.throws(() => exampleGuestUrl("nope" as "hello"), TypeError);
});

Deno.test("loadGuest reads paths, file: and http: URLs, and refuses errors and oversized bodies", async () => {
  const hello = await Deno.readFile(`${ROOT}guest/bin/hello`);
  const big = MAX_IMAGE_SIZE + 1;
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/hello") return new Response(hello);
    if (path === "/declared-too-large") return new Response(new Uint8Array(big));
    if (path === "/streamed-too-large") {
      // No content-length: the limit must hold while reading.
      let sent = 0;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (sent > big) return c.close();
            c.enqueue(new Uint8Array(1 << 20));
            sent += 1 << 20;
          },
        }),
      );
    }
    return new Response("not here", { status: 404 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  assert.deepEqual(await loadGuest(`${ROOT}guest/bin/hello`), hello);
  assert.deepEqual(await loadGuest(exampleGuestUrl("hello")), hello);
  assert.deepEqual(await loadGuest(exampleGuestUrl("hello").href), hello);
  assert.deepEqual(await loadGuest(`${base}/hello`), hello);
  await assert.rejects(() => loadGuest(`${base}/missing`), PackageFileError);
  await assert.rejects(() => loadGuest(`${base}/missing`), /Cannot read http:.*\/missing: HTTP 404/);
  await assert.rejects(() => loadGuest(`${base}/declared-too-large`), /67108865 bytes, limit 67108864/);
  await assert.rejects(() => loadGuest(`${base}/streamed-too-large`), /more than 67108864 bytes/);
  await assert.rejects(() => loadGuest(`${ROOT}guest/bin/none`), /Cannot read .*none: no such file/);
  await assert.rejects(() => loadGuest(new URL("ftp://example.com/g")), /unsupported protocol ftp:/);
});

needsTest(["gcc"], "buildGuest reproduces the committed hello guest from its source", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await buildGuest([`${ROOT}guest/hello/hello.c`], `${dir}/hello`);
    assert.equal(r.output, `${dir}/hello`);
    assert.equal(r.warnings, "");
    assert.deepEqual(await Deno.readFile(`${dir}/hello`), await Deno.readFile(`${ROOT}guest/bin/hello`));
    // The temporary SDK directory (the first prefix map) is gone.
    const sdkDir = r.command.find((a) => a.startsWith("-ffile-prefix-map="))!.slice(18).split("=")[0];
    assert.match(sdkDir, /snapvm-sdk-/);
    assert.ok(!existsSync(sdkDir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

needsTest(["gcc"], "buildGuest: typed errors for a compile error, a missing gcc and no sources", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.c`, "int x = ;\n");
    const e = await buildGuest([`${dir}/bad.c`], `${dir}/bad`).catch((e) => e);
    assert.ok(e instanceof GuestBuildError);
    assert.match(e.message, /^Cannot build guest: gcc failed: .*bad\.c:1:9: error: expected expression/);
    assert.match(e.log, /int x = ;/);
    await assert.rejects(
      () => buildGuest([`${dir}/bad.c`], `${dir}/bad`, { gcc: `${dir}/no-such-gcc` }),
      GccNotFoundError,
    );
    await assert.rejects(() => buildGuest([], `${dir}/x`), TypeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
