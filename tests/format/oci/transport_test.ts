// The transport policy and challenge parsing of format/oci/_client.ts and _challenge.ts, without network.
import assert from "node:assert/strict";
import { InsecureRegistryError, OciContentError, parseReference } from "../../../format/oci/mod.ts";
import { isLoopbackHost, RegistryClient, registryOrigin } from "../../../format/oci/_client.ts";
import { parseChallenge } from "../../../format/oci/_challenge.ts";

Deno.test("loopback hosts are localhost, 127.0.0.0/8 and ::1", () => {
  for (const host of ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]", "::1"]) {
    assert.equal(isLoopbackHost(host), true, host);
  }
  for (const host of ["10.0.0.1", "127.0.0.1.example.com", "localhost.example.com", "[::2]", "128.0.0.1"]) {
    assert.equal(isLoopbackHost(host), false, host);
  }
});

Deno.test("registries use plain HTTP on loopback or with insecure, HTTPS otherwise", () => {
  assert.equal(registryOrigin("127.0.0.1:5000", false), "http://127.0.0.1:5000");
  assert.equal(registryOrigin("localhost", false), "http://localhost");
  assert.equal(registryOrigin("[::1]:5000", false), "http://[::1]:5000");
  assert.equal(registryOrigin("registry.example.com", false), "https://registry.example.com");
  assert.equal(registryOrigin("registry.example.com:5000", false), "https://registry.example.com:5000");
  assert.equal(registryOrigin("registry.example.com:5000", true), "http://registry.example.com:5000");
  assert.equal(registryOrigin("docker.io", false), "https://registry-1.docker.io");
});

Deno.test("Docker Hub names without a namespace are in library/", () => {
  assert.equal(
    new RegistryClient(parseReference("docker.io/alpine"), "pull", {}).repository,
    "library/alpine",
  );
  assert.equal(new RegistryClient(parseReference("docker.io/me/app"), "pull", {}).repository, "me/app");
});

Deno.test("Locations and redirects obey the same transport policy", () => {
  const remote = new RegistryClient(parseReference("registry.example.com/app"), "pull", {});
  const base = remote.url("blobs/uploads/");
  assert.equal(
    remote.resolve("/v2/app/blobs/uploads/x?_state=y", base, "an upload location"),
    "https://registry.example.com/v2/app/blobs/uploads/x?_state=y",
  );
  assert.equal(
    remote.resolve("https://storage.example.net/blob", base, "a redirect"),
    "https://storage.example.net/blob",
  );
  assert.throws(() => remote.resolve("http://storage.example.net/blob", base, "a redirect"), (e) => {
    assert.ok(e instanceof InsecureRegistryError);
    assert.equal(
      e.message,
      "Refusing plain HTTP to storage.example.net for a redirect: only loopback hosts use HTTP unless `insecure: true` is set",
    );
    return true;
  });
  // A remote registry cannot point snapvm at this machine's loopback services either.
  assert.throws(() => remote.resolve("http://127.0.0.1:8080/x", base, "a redirect"), InsecureRegistryError);
  assert.throws(() => remote.resolve("file:///etc/passwd", base, "a redirect"), OciContentError);
  assert.throws(
    () => remote.resolve(null, base, "an upload location"),
    /Location header is "missing", expected a URL/,
  );

  const local = new RegistryClient(parseReference("127.0.0.1:5000/app"), "pull", {});
  assert.equal(
    local.resolve("http://localhost:5000/x", local.url("x"), "a redirect"),
    "http://localhost:5000/x",
  );
  assert.throws(
    () => local.resolve("http://example.com/x", local.url("x"), "a redirect"),
    InsecureRegistryError,
  );

  const insecure = new RegistryClient(parseReference("registry.lan:5000/app"), "pull", { insecure: true });
  assert.equal(insecure.url("x"), "http://registry.lan:5000/v2/app/x");
  assert.equal(insecure.resolve("http://other.lan/x", insecure.url("x"), "a redirect"), "http://other.lan/x");
});

Deno.test("parseChallenge reads Basic and Bearer challenges", () => {
  assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), {
    scheme: "Basic",
    params: { realm: "Registry Realm" },
  });
  assert.deepEqual(
    parseChallenge(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push",error="insufficient_scope"',
    ),
    {
      scheme: "Bearer",
      params: {
        realm: "https://auth.example.com/token",
        service: "registry.example.com",
        scope: "repository:a/b:pull,push",
        error: "insufficient_scope",
      },
    },
  );
  assert.deepEqual(parseChallenge('Bearer realm="a\\"b", service=svc'), {
    scheme: "Bearer",
    params: { realm: 'a"b', service: "svc" },
  });
  assert.equal(parseChallenge(null), null);
  assert.equal(parseChallenge('Bearer realm="unterminated'), null);
  assert.equal(parseChallenge(""), null);
  assert.equal(parseChallenge(`Bearer realm="${"x".repeat(20000)}"`), null);
});
