// Authentication against a real registry: HTTP Basic (htpasswd, bcrypt) and Bearer tokens from a token
// server (the distribution token protocol), as implemented in format/oci/_client.ts.
import assert from "node:assert/strict";
import {
  type PullOptions,
  pullSnapshotFile,
  pushSnapshotFile,
  RegistryAuthError,
  RegistryError,
} from "../../../format/oci/mod.ts";
import { htpasswdLine, registryTest, startRegistry } from "./_registry.ts";
import { startTokenServer } from "./_token_server.ts";

const GOLDEN = new URL("../../golden/testguest-call.hls", import.meta.url).pathname;

async function pull(reference: string, options: PullOptions = {}): Promise<Uint8Array> {
  const cacheDir = await Deno.makeTempDir({ prefix: "snapvm-oci-cache-" });
  try {
    return await Deno.readFile((await pullSnapshotFile(reference, { ...options, cacheDir })).path);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
}

function authError(status: number, scheme: string, reason: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof RegistryAuthError, String(e));
    assert.ok(e instanceof RegistryError);
    assert.equal(e.status, status, e.message);
    assert.equal(e.scheme, scheme, e.message);
    assert.match(e.message, reason);
    assert.match(
      e.message,
      /^Registry authentication failed for (GET|HEAD|POST|PUT|PATCH) http:\/\/127\.0\.0\.1:\d+\//,
    );
    return true;
  };
}

registryTest(
  "HTTP Basic: the right password pushes and pulls; none or a wrong one is a RegistryAuthError",
  async () => {
    await using registry = await startRegistry({
      auth: { htpasswd: htpasswdLine("alice", "s3cret!") + htpasswdLine("bob", "other") },
    });
    const ref = `${registry.host}/private/app:v1`;
    const alice = { credentials: { username: "alice", password: "s3cret!" } };
    const pushed = await pushSnapshotFile(GOLDEN, ref, alice);
    assert.deepEqual(pushed.blobs.map((b) => b.outcome), ["uploaded", "uploaded"]);
    assert.deepEqual(await pull(ref, alice), await Deno.readFile(GOLDEN));
    assert.deepEqual(
      await pull(ref, { credentials: { username: "bob", password: "other" } }),
      await Deno.readFile(GOLDEN),
    );

    await assert.rejects(
      () => pull(ref),
      authError(401, "Basic", /asks for credentials and none were given/),
    );
    await assert.rejects(
      () => pull(ref, { credentials: { username: "alice", password: "wrong" } }),
      authError(401, "Basic", /user name or password was refused.*UNAUTHORIZED/),
    );
    await assert.rejects(
      () => pushSnapshotFile(GOLDEN, ref, { credentials: { token: "abc" } }),
      authError(401, "Basic", /asks for a user name and password, not a token/),
    );
  },
);

registryTest("Bearer tokens: the token server's grants decide what push and pull may do", async () => {
  await using tokens = await startTokenServer(
    {
      alice: { password: "pw-alice", actions: ["pull", "push"] },
      reader: { password: "pw-r", actions: ["pull"] },
    },
    [],
  );
  await using registry = await startRegistry({
    auth: {
      token: {
        realm: tokens.realm,
        service: tokens.service,
        issuer: tokens.issuer,
        rootCertBundle: tokens.rootCertBundle,
      },
    },
  });
  const ref = `${registry.host}/team/app:v1`;
  const alice = { credentials: { username: "alice", password: "pw-alice" } };
  await pushSnapshotFile(GOLDEN, ref, alice);
  // One token answers the whole push: the first challenge's scope plus push access to the repository.
  const aliceRequests = tokens.requests.filter((r) => r.user === "alice");
  assert.equal(aliceRequests.length, 1, JSON.stringify(tokens.requests));
  assert.ok(aliceRequests[0].scopes.includes("repository:team/app:pull,push"), JSON.stringify(aliceRequests));

  assert.deepEqual(
    await pull(ref, { credentials: { username: "reader", password: "pw-r" } }),
    await Deno.readFile(GOLDEN),
  );
  await assert.rejects(
    () =>
      pushSnapshotFile(GOLDEN, `${registry.host}/team/app:v2`, {
        credentials: { username: "reader", password: "pw-r" },
      }),
    // The registry lists the scope's actions in either order.
    authError(401, "Bearer", /the token does not grant repository:team\/app:(pull,push|push,pull)/),
  );
  await assert.rejects(
    () => pull(ref, { credentials: { username: "alice", password: "nope" } }),
    (e) => {
      assert.ok(e instanceof RegistryAuthError, String(e));
      assert.equal(e.scheme, "Bearer");
      assert.match(
        e.message,
        /^Registry authentication failed for GET http:\/\/127\.0\.0\.1:\d+\/token \(the token server refused the credentials\): HTTP 401: UNAUTHORIZED/,
      );
      assert.ok(!e.message.includes("nope"), "the password is not in the message");
      return true;
    },
  );
  // Anonymous users get a token without any access here: the registry refuses it.
  await assert.rejects(
    () => pull(ref),
    authError(401, "Bearer", /the token does not grant|refused the token/),
  );
  // A ready-made token that the registry does not accept.
  await assert.rejects(
    () => pull(ref, { credentials: { token: "not.a.jwt" } }),
    authError(401, "Bearer", /refused the token/),
  );
});
