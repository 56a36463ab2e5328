import assert from "node:assert/strict";
import {
  formatReference,
  isSha256Digest,
  isValidTag,
  OciReferenceError,
  parseReference,
} from "../../../format/oci/mod.ts";

const DIGEST = `sha256:${"ab".repeat(32)}`;

Deno.test("parseReference splits registry, repository, tag and digest", () => {
  assert.deepEqual(parseReference("127.0.0.1:5000/app:v1"), {
    registry: "127.0.0.1:5000",
    repository: "app",
    tag: "v1",
  });
  assert.deepEqual(parseReference("registry.example.com/team/sub/app"), {
    registry: "registry.example.com",
    repository: "team/sub/app",
  });
  assert.deepEqual(parseReference(`localhost/a.b_c__d--e/f:tag_1.2-x@${DIGEST}`), {
    registry: "localhost",
    repository: "a.b_c__d--e/f",
    tag: "tag_1.2-x",
    digest: DIGEST,
  });
  assert.deepEqual(parseReference(`[::1]:5000/app@${DIGEST}`), {
    registry: "[::1]:5000",
    repository: "app",
    digest: DIGEST,
  });
  assert.equal(parseReference("docker.io/library/alpine:3").registry, "docker.io");
});

Deno.test("formatReference is the inverse of parseReference", () => {
  for (
    const text of [
      "127.0.0.1:5000/app:v1",
      "registry.example.com/team/app",
      `localhost:5000/app:v1@${DIGEST}`,
      `[::1]/app@${DIGEST}`,
    ]
  ) {
    assert.equal(formatReference(parseReference(text)), text);
  }
});

Deno.test("parseReference refuses malformed references, saying which part is wrong", () => {
  const cases: [string, RegExp][] = [
    ["app:v1", /names no registry host/],
    ["team/app:v1", /"team" is not a registry host/],
    ["127.0.0.1:5000/App:v1", /repository component "App"/],
    ["127.0.0.1:5000/app/:v1", /repository component ""/],
    ["127.0.0.1:5000/:v1", /repository name is empty/],
    ["127.0.0.1:5000/a-/b", /repository component "a-"/],
    ["127.0.0.1:5000/app:.v1", /tag "\.v1"/],
    [`127.0.0.1:5000/app:${"t".repeat(129)}`, /tag/],
    ["127.0.0.1:5000/app@sha256:abc", /digest "sha256:abc" is not sha256/],
    [`127.0.0.1:5000/app@sha512:${"a".repeat(128)}`, /digest algorithm "sha512" is not supported/],
    [`127.0.0.1:5000/app@sha256:${"A".repeat(64)}`, /lower-case hex/],
    ["127.0.0.1:0/app", /port 0 is outside 1..65535/],
    ["127.0.0.1:65536/app", /port 65536/],
    ["bad_host.com/app", /registry host "bad_host.com" is malformed/],
    [`r.io/${"a".repeat(252)}`, /the name is 257 characters, expected at most 255/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseReference(text), (error: unknown) => {
      assert.ok(error instanceof OciReferenceError, `${text}: ${error}`);
      assert.equal(error.reference, text);
      assert.match(error.message, message, text);
      assert.ok(error.message.startsWith(`Invalid OCI reference ${JSON.stringify(text)}: `));
      return true;
    });
  }
});

Deno.test("isSha256Digest and isValidTag follow the grammar", () => {
  assert.equal(isSha256Digest(DIGEST), true);
  assert.equal(isSha256Digest(DIGEST.toUpperCase()), false);
  assert.equal(isSha256Digest(`${DIGEST}0`), false);
  assert.equal(isValidTag("latest"), true);
  assert.equal(isValidTag("_x.y-z"), true);
  assert.equal(isValidTag("-x"), false);
  assert.equal(isValidTag(""), false);
});
