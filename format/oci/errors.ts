/**
 * The typed errors of pushing, pulling, exporting and importing snapshots: one class per failure.
 *
 * - {@linkcode OciReferenceError}: a reference string that does not parse.
 * - {@linkcode RegistryError}: the registry answered with an unexpected HTTP status.
 * - {@linkcode RegistryAuthError}: the registry (or its token server) refused the credentials, or wants some.
 * - {@linkcode RegistryConnectionError}: no HTTP answer at all (connection refused, reset, DNS failure).
 * - {@linkcode InsecureRegistryError}: plain HTTP would be needed for a host that is not loopback.
 * - {@linkcode DigestMismatchError}: content whose SHA-256 is not the digest it was asked for.
 * - {@linkcode OciContentError}: a manifest, config, index or response that breaks a rule or a limit.
 * - {@linkcode OciLayoutError}: an image-layout directory that lacks what was asked for.
 * - {@linkcode OciCacheError}: no cache directory can be determined.
 *
 * @module
 */
import { SnapvmError } from "../../errors.ts";

/**
 * A reference such as `127.0.0.1:5000/team/app:v1` that does not follow the distribution grammar.
 *
 * @example
 * ```ts
 * import { OciReferenceError, parseReference } from "./mod.ts";
 *
 * try {
 *   parseReference("127.0.0.1:5000/App:v1");
 * } catch (error) {
 *   console.log(error instanceof OciReferenceError); // true
 * }
 * ```
 */
export class OciReferenceError extends SnapvmError {
  /** Always `"OciReferenceError"`. */
  override name = "OciReferenceError";
  /** The reference as given. */
  readonly reference: string;

  /**
   * Builds the error and its message.
   *
   * @param reference The reference as given.
   * @param problem What is wrong, completing "Invalid OCI reference …: ".
   */
  constructor(reference: string, problem: string) {
    super(`Invalid OCI reference ${JSON.stringify(reference)}: ${problem}`);
    this.reference = reference;
  }
}

/**
 * One entry of a registry's error body (`{"errors": [{"code", "message", "detail"}]}`), e.g.
 * `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DIGEST_INVALID`, `UNAUTHORIZED`, `DENIED`.
 *
 * @example
 * ```ts
 * import type { RegistryErrorCode } from "./errors.ts";
 *
 * const code: RegistryErrorCode = { code: "MANIFEST_UNKNOWN", message: "manifest unknown" };
 * console.log(code.code);
 * ```
 */
export interface RegistryErrorCode {
  /** The code, upper case with underscores. */
  code: string;
  /** The registry's message. */
  message: string;
  /** Free-form detail, when the registry sent one (JSON-encoded). */
  detail?: string;
}

/**
 * What a {@linkcode RegistryError} carries.
 *
 * @example
 * ```ts
 * import type { RegistryErrorInit } from "./errors.ts";
 *
 * const init: RegistryErrorInit = { method: "GET", url: "http://127.0.0.1:5000/v2/a/manifests/v1", status: 404, codes: [] };
 * console.log(init.status);
 * ```
 */
export interface RegistryErrorInit {
  /** The HTTP method. */
  method: string;
  /** The URL requested (without query string, so no upload state or credentials leak into logs). */
  url: string;
  /** The HTTP status received. */
  status: number;
  /** The codes from the error body (empty when there was none or it did not parse). */
  codes: RegistryErrorCode[];
  /** What was expected instead, e.g. `HTTP 201`. */
  expected?: string;
}

/** Drops the query string and fragment: upload URLs carry signed state that is of no use in a message. */
function withoutQuery(url: string): string {
  const cut = url.search(/[?#]/);
  return cut < 0 ? url : url.slice(0, cut);
}

function describeCodes(codes: readonly RegistryErrorCode[]): string {
  if (codes.length === 0) return "";
  return ": " + codes.map((c) => c.message === "" ? c.code : `${c.code} (${c.message})`).join(", ");
}

/**
 * The registry answered with an HTTP status other than the one the protocol step expects. `status` and
 * `codes` (the registry's error codes) say why; a missing manifest is status 404 with `MANIFEST_UNKNOWN`.
 *
 * @example
 * ```ts
 * import { RegistryError } from "./errors.ts";
 *
 * const error = new RegistryError({
 *   method: "GET",
 *   url: "http://127.0.0.1:5000/v2/app/manifests/v9",
 *   status: 404,
 *   codes: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }],
 * });
 * console.log(error.message);
 * // Registry refused GET http://127.0.0.1:5000/v2/app/manifests/v9: HTTP 404: MANIFEST_UNKNOWN (manifest unknown)
 * console.log(error.hasCode("MANIFEST_UNKNOWN")); // true
 * ```
 */
export class RegistryError extends SnapvmError {
  /** `"RegistryError"` (or the subclass name). */
  override name: string = "RegistryError";
  /** The HTTP method. */
  readonly method: string;
  /** The URL, without its query string. */
  readonly url: string;
  /** The HTTP status. */
  readonly status: number;
  /** The registry's error codes. */
  readonly codes: readonly RegistryErrorCode[];

  /**
   * Builds the error and its message.
   *
   * @param init Method, URL, status, codes and the expected status.
   * @param summary Replaces the default "Registry refused METHOD URL" opening.
   */
  constructor(init: RegistryErrorInit, summary?: string) {
    const opening = summary ?? `Registry refused ${init.method} ${withoutQuery(init.url)}`;
    const expected = init.expected === undefined ? "" : `, expected ${init.expected}`;
    super(`${opening}: HTTP ${init.status}${expected}${describeCodes(init.codes)}`);
    this.method = init.method;
    this.url = withoutQuery(init.url);
    this.status = init.status;
    this.codes = init.codes;
  }

  /**
   * Whether the registry sent this error code.
   *
   * @param code For example `"MANIFEST_UNKNOWN"`.
   * @returns `true` when one of {@linkcode RegistryError.codes} has it.
   */
  hasCode(code: string): boolean {
    return this.codes.some((c) => c.code === code);
  }
}

/**
 * Authentication or authorization failed: the registry wants credentials and none were given, the registry
 * or its token server refused them (HTTP 401), or they do not allow the operation (HTTP 403, or a token
 * without the requested scope). `scheme` is the challenge's scheme (`Basic` or `Bearer`).
 *
 * @example
 * ```ts
 * import { RegistryAuthError, RegistryError } from "./errors.ts";
 *
 * const error = new RegistryAuthError(
 *   { method: "PUT", url: "http://127.0.0.1:5000/v2/app/manifests/v1", status: 401, codes: [] },
 *   "Basic",
 *   "no credentials were given",
 * );
 * console.log(error instanceof RegistryError, error.scheme); // true Basic
 * ```
 */
export class RegistryAuthError extends RegistryError {
  /** Always `"RegistryAuthError"`. */
  override name = "RegistryAuthError";
  /** The authentication scheme the registry asked for, or `""` when it named none. */
  readonly scheme: string;

  /**
   * Builds the error and its message.
   *
   * @param init Method, URL, status and codes of the refused request.
   * @param scheme The challenge's scheme.
   * @param reason Why, completing "Registry authentication failed for METHOD URL (…)".
   */
  constructor(init: RegistryErrorInit, scheme: string, reason: string) {
    super(init, `Registry authentication failed for ${init.method} ${withoutQuery(init.url)} (${reason})`);
    this.scheme = scheme;
  }
}

/**
 * The request got no HTTP answer: connection refused or reset, DNS failure, TLS failure. `cause` holds the
 * underlying error.
 *
 * @example
 * ```ts
 * import { RegistryConnectionError } from "./errors.ts";
 *
 * const error = new RegistryConnectionError("GET", "http://127.0.0.1:1/v2/", new TypeError("Connection refused"));
 * console.log(error.message); // Cannot reach registry: GET http://127.0.0.1:1/v2/ failed: Connection refused
 * ```
 */
export class RegistryConnectionError extends SnapvmError {
  /** Always `"RegistryConnectionError"`. */
  override name = "RegistryConnectionError";
  /** The HTTP method. */
  readonly method: string;
  /** The URL, without its query string. */
  readonly url: string;

  /**
   * Builds the error and its message.
   *
   * @param method The HTTP method.
   * @param url The URL.
   * @param cause The error `fetch` threw.
   */
  constructor(method: string, url: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`Cannot reach registry: ${method} ${withoutQuery(url)} failed: ${why}`, { cause });
    this.method = method;
    this.url = withoutQuery(url);
  }
}

/**
 * Plain HTTP would be used for a host that is not loopback (`localhost`, `127.0.0.0/8`, `::1`), because the
 * reference names such a host with `insecure` not set, or because a registry, token realm or redirect points
 * from HTTPS (or loopback) to plain HTTP elsewhere. Nothing was sent to that URL.
 *
 * @example
 * ```ts
 * import { InsecureRegistryError } from "./errors.ts";
 *
 * const error = new InsecureRegistryError("http://registry.internal/v2/", "a token realm");
 * console.log(error.message);
 * // Refusing plain HTTP to registry.internal for a token realm: only loopback hosts use HTTP unless `insecure: true` is set
 * ```
 */
export class InsecureRegistryError extends SnapvmError {
  /** Always `"InsecureRegistryError"`. */
  override name = "InsecureRegistryError";
  /** The refused URL, without its query string. */
  readonly url: string;

  /**
   * Builds the error and its message.
   *
   * @param url The refused URL.
   * @param purpose What the URL was for ("a token realm", "a redirect", "the registry").
   */
  constructor(url: string, purpose: string) {
    let host = url;
    try {
      host = new URL(url).host;
    } catch {
      // keep the text as given
    }
    super(
      `Refusing plain HTTP to ${host} for ${purpose}: only loopback hosts use HTTP unless \`insecure: true\` is set`,
    );
    this.url = withoutQuery(url);
  }
}

/**
 * Content whose SHA-256 digest is not the one it was addressed by: a corrupt blob in the registry, a
 * corrupt or altered cache or layout file, or a registry that reported another digest than the content has.
 * Nothing is cached when this is thrown.
 *
 * @example
 * ```ts
 * import { DigestMismatchError } from "./errors.ts";
 *
 * const error = new DigestMismatchError("layer", "sha256:" + "a".repeat(64), "sha256:" + "b".repeat(64));
 * console.log(error.message.startsWith("Digest mismatch for layer: content has sha256:bbbb")); // true
 * ```
 */
export class DigestMismatchError extends SnapvmError {
  /** Always `"DigestMismatchError"`. */
  override name = "DigestMismatchError";
  /** What was checked: `manifest`, `config`, `layer`, `manifest (Docker-Content-Digest)`, … */
  readonly what: string;
  /** The digest the content was addressed by. */
  readonly expected: string;
  /** The digest of the content received. */
  readonly found: string;

  /**
   * Builds the error and its message.
   *
   * @param what What was checked.
   * @param expected The digest the content was addressed by.
   * @param found The digest of the content received.
   */
  constructor(what: string, expected: string, found: string) {
    super(`Digest mismatch for ${what}: content has ${found}, expected ${expected}`);
    this.what = what;
    this.expected = expected;
    this.found = found;
  }
}

/**
 * Every kind of {@linkcode OciContentError}. Stable strings, only ever added to.
 *
 * - `InvalidJson`: not UTF-8 JSON, or not an object where one is required.
 * - `InvalidField`: a field is missing, of the wrong type, or out of range.
 * - `UnsupportedMediaType`: a media type snapvm does not read (an image index where a manifest belongs, a
 *   layer type from a future version).
 * - `TooLarge`: more bytes than the limit for that kind of content.
 * - `SizeMismatch`: a blob whose length differs from its descriptor's `size`.
 *
 * @example
 * ```ts
 * import { OCI_CONTENT_ERROR_KINDS } from "./errors.ts";
 *
 * console.log(OCI_CONTENT_ERROR_KINDS.includes("TooLarge")); // true
 * ```
 */
export const OCI_CONTENT_ERROR_KINDS = [
  "InvalidJson",
  "InvalidField",
  "UnsupportedMediaType",
  "TooLarge",
  "SizeMismatch",
] as const;

/**
 * One of {@linkcode OCI_CONTENT_ERROR_KINDS}.
 *
 * @example
 * ```ts
 * import type { OciContentErrorKind } from "./errors.ts";
 *
 * const kind: OciContentErrorKind = "SizeMismatch";
 * console.log(kind);
 * ```
 */
export type OciContentErrorKind = typeof OCI_CONTENT_ERROR_KINDS[number];

/**
 * A manifest, config blob, image index, blob or registry response that breaks a rule or a limit. `what`
 * names the content, `field` the place in it, `found` and `expected` the values.
 *
 * @example
 * ```ts
 * import { OciContentError } from "./errors.ts";
 *
 * const error = new OciContentError("InvalidField", "manifest", "schemaVersion", 1, "2");
 * console.log(error.message); // Invalid manifest: schemaVersion is 1, expected 2
 * ```
 */
export class OciContentError extends SnapvmError {
  /** Always `"OciContentError"`. */
  override name = "OciContentError";
  /** The class of problem. */
  readonly kind: OciContentErrorKind;
  /** The content: `manifest`, `config`, `index.json`, `layer sha256:…`, `token response`, … */
  readonly what: string;
  /** The field or property path inside it (`layers[0].digest`), or `""` for the whole content. */
  readonly field: string;
  /** The value found, as text (JSON for field values). */
  readonly found: string;
  /** What was expected, completing "expected …". */
  readonly expected: string;

  /**
   * Builds the error and its message.
   *
   * @param kind The class of problem.
   * @param what The content.
   * @param field The field inside it, or `""`.
   * @param found The value found: a field's value, or a description of the whole content when `field` is `""`.
   * @param expected What was expected.
   */
  constructor(kind: OciContentErrorKind, what: string, field: string, found: unknown, expected: string) {
    // Field values are shown as JSON (strings quoted); a description of the whole content is shown as is.
    const shown = typeof found === "string" && field === "" ? found : JSON.stringify(found) ?? String(found);
    const subject = field === "" ? "" : `${field} `;
    super(`Invalid ${what}: ${subject}is ${clip(shown)}, expected ${expected}`);
    this.kind = kind;
    this.what = what;
    this.field = field;
    this.found = shown;
    this.expected = expected;
  }
}

/** Keeps messages readable when a registry sends a huge value. */
function clip(text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 200)}… (${text.length} characters)`;
}

/**
 * An OCI image-layout directory that is not one (no `oci-layout` file, unknown layout version) or does not
 * hold the tag or digest asked for.
 *
 * @example
 * ```ts
 * import { OciLayoutError } from "./errors.ts";
 *
 * const error = new OciLayoutError("/tmp/layout", 'has no manifest tagged "v2" (tags: v1)');
 * console.log(error.message); // Cannot use OCI image layout /tmp/layout: has no manifest tagged "v2" (tags: v1)
 * ```
 */
export class OciLayoutError extends SnapvmError {
  /** Always `"OciLayoutError"`. */
  override name = "OciLayoutError";
  /** The layout directory. */
  readonly dir: string;

  /**
   * Builds the error and its message.
   *
   * @param dir The layout directory.
   * @param problem What is wrong, completing "Cannot use OCI image layout DIR: ".
   */
  constructor(dir: string, problem: string) {
    super(`Cannot use OCI image layout ${dir}: ${problem}`);
    this.dir = dir;
  }
}

/**
 * The local content-addressed cache cannot be used: no `cacheDir` was given and Deno's cache directory cannot
 * be determined (neither `DENO_DIR` nor the home directory is set, or environment access is denied).
 *
 * @example
 * ```ts
 * import { OciCacheError } from "./errors.ts";
 *
 * const error = new OciCacheError("neither DENO_DIR nor HOME is set");
 * console.log(error.message); // Cannot locate the snapshot cache: neither DENO_DIR nor HOME is set; pass `cacheDir`
 * ```
 */
export class OciCacheError extends SnapvmError {
  /** Always `"OciCacheError"`. */
  override name = "OciCacheError";

  /**
   * Builds the error and its message.
   *
   * @param problem Why, completing "Cannot locate the snapshot cache: ".
   */
  constructor(problem: string) {
    super(`Cannot locate the snapshot cache: ${problem}; pass \`cacheDir\``);
  }
}
