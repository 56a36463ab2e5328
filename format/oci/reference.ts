/**
 * Parsing and formatting image references: `registry/repository[:tag][@sha256:digest]`, following the
 * grammar of the CNCF distribution project (the same strings `docker pull` accepts), except that the registry
 * host is always explicit.
 *
 * @module
 */

import { OciReferenceError } from "./errors.ts";

/**
 * A parsed reference. When both `tag` and `digest` are absent, push and pull use the tag `latest`; when a
 * digest is present, pull fetches that exact manifest and the tag is only informative.
 *
 * @example
 * ```ts
 * import type { OciReference } from "./reference.ts";
 *
 * const ref: OciReference = { registry: "127.0.0.1:5000", repository: "team/app", tag: "v1" };
 * console.log(ref.repository);
 * ```
 */
export interface OciReference {
  /** The registry host and optional port, as written (`127.0.0.1:5000`, `registry.example.com`, `[::1]:5000`). */
  registry: string;
  /** The repository path: lower-case components separated by `/` (`team/app`). */
  repository: string;
  /** The tag, when given. */
  tag?: string;
  /** The manifest digest (`sha256:` and 64 lower-case hex digits), when given. */
  digest?: string;
}

/** Longest repository name with its registry, as in the distribution grammar. */
const MAX_NAME_LENGTH = 255;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const HOST = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::([0-9]+))?$`,
);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
/** The only digest algorithm snapvm computes and verifies. */
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/**
 * Whether `text` is a digest snapvm can verify: `sha256:` and 64 lower-case hex digits.
 *
 * @param text A candidate digest.
 * @returns `true` for a well-formed SHA-256 digest.
 *
 * @example
 * ```ts
 * import { isSha256Digest } from "./reference.ts";
 *
 * console.log(isSha256Digest("sha256:" + "0".repeat(64)), isSha256Digest("sha512:00")); // true false
 * ```
 */
export function isSha256Digest(text: string): boolean {
  return DIGEST.test(text);
}

/**
 * Whether `text` is a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
 *
 * @param text A candidate tag.
 * @returns `true` for a valid tag.
 *
 * @example
 * ```ts
 * import { isValidTag } from "./reference.ts";
 *
 * console.log(isValidTag("v1.2"), isValidTag(".hidden")); // true false
 * ```
 */
export function isValidTag(text: string): boolean {
  return TAG.test(text);
}

/**
 * Parses a reference. The registry host must be explicit: the first path component is a host when it
 * contains `.` or `:`, is `localhost`, or is a bracketed IPv6 address.
 *
 * @param text For example `127.0.0.1:5000/team/app:v1` or `registry.example.com/app@sha256:…`.
 * @returns The parts.
 * @throws {OciReferenceError} Saying which part is malformed.
 *
 * @example
 * ```ts
 * import { parseReference } from "./reference.ts";
 *
 * const ref = parseReference("127.0.0.1:5000/team/app:v1");
 * console.log(ref.registry, ref.repository, ref.tag); // 127.0.0.1:5000 team/app v1
 * ```
 */
export function parseReference(text: string): OciReference {
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      const problem = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:/.test(digest) && !digest.startsWith("sha256:")
        ? `digest algorithm ${JSON.stringify(digest.split(":")[0])} is not supported, expected sha256`
        : `digest ${JSON.stringify(digest)} is not sha256: followed by 64 lower-case hex digits`;
      throw new OciReferenceError(text, problem);
    }
  }
  const slash = rest.indexOf("/");
  if (slash < 0) {
    throw new OciReferenceError(text, "it names no registry host, expected HOST[:PORT]/REPOSITORY[:TAG]");
  }
  const registry = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  if (
    !(registry.includes(".") || registry.includes(":") || registry === "localhost" ||
      registry.startsWith("["))
  ) {
    throw new OciReferenceError(
      text,
      `${JSON.stringify(registry)} is not a registry host (a host has a "." or ":" or is localhost), ` +
        "expected HOST[:PORT]/REPOSITORY[:TAG]",
    );
  }
  const host = HOST.exec(registry);
  if (host === null) {
    throw new OciReferenceError(text, `registry host ${JSON.stringify(registry)} is malformed`);
  }
  if (host[1] !== undefined) {
    const port = Number(host[1]);
    if (port < 1 || port > 65535) throw new OciReferenceError(text, `port ${host[1]} is outside 1..65535`);
  }

  let tag: string | undefined;
  const colon = path.lastIndexOf(":");
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) {
      throw new OciReferenceError(
        text,
        `tag ${JSON.stringify(tag)} is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`,
      );
    }
  }
  if (path === "") throw new OciReferenceError(text, "the repository name is empty");
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      throw new OciReferenceError(
        text,
        `repository component ${JSON.stringify(component)} is not lower-case letters and digits ` +
          'separated by ".", "_", "__" or dashes',
      );
    }
  }
  if (registry.length + 1 + path.length > MAX_NAME_LENGTH) {
    throw new OciReferenceError(
      text,
      `the name is ${registry.length + 1 + path.length} characters, expected at most ${MAX_NAME_LENGTH}`,
    );
  }
  const ref: OciReference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Formats a reference back to text: `registry/repository[:tag][@digest]`.
 *
 * @param ref The parts.
 * @returns The reference string.
 *
 * @example
 * ```ts
 * import { formatReference } from "./reference.ts";
 *
 * console.log(formatReference({ registry: "127.0.0.1:5000", repository: "app", tag: "v1" })); // 127.0.0.1:5000/app:v1
 * ```
 */
export function formatReference(ref: OciReference): string {
  const tag = ref.tag === undefined ? "" : `:${ref.tag}`;
  const digest = ref.digest === undefined ? "" : `@${ref.digest}`;
  return `${ref.registry}/${ref.repository}${tag}${digest}`;
}
