/**
 * A minimal OCI Distribution API client for one repository: transport policy (HTTPS except loopback),
 * authentication (HTTP Basic and Bearer tokens from the registry's token server), redirects, and typed
 * errors for every status. Internal: push, pull and the layout functions build on it.
 *
 * @module
 */

import { MAX_REDIRECTS, MAX_SMALL_RESPONSE_SIZE } from "./constants.ts";
import {
  InsecureRegistryError,
  OciContentError,
  RegistryAuthError,
  RegistryConnectionError,
  RegistryError,
  type RegistryErrorCode,
  type RegistryErrorInit,
} from "./errors.ts";
import type { RegistryCredentials, RegistryOptions } from "./options.ts";
import type { OciReference } from "./reference.ts";
import { type Challenge, parseChallenge } from "./_challenge.ts";
import { parseJsonObject } from "./_json.ts";
import { readStreamLimited } from "./_read.ts";

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Docker Hub's registry API is not served at the name users write. */
const DOCKER_HUB = "docker.io";
const DOCKER_HUB_API = "registry-1.docker.io";
/** Bearer tokens are placed in a header: visible ASCII only. */
const TOKEN_TEXT = /^[\x21-\x7e]{1,65536}$/;
const MAX_ERROR_CODES = 16;

/**
 * Whether a URL host name is a loopback host, to which plain HTTP is used without `insecure`.
 *
 * @param hostname As in `URL.hostname` (`127.0.0.1`, `localhost`, `[::1]`).
 * @returns `true` for `localhost`, `127.0.0.0/8` and `::1`.
 */
export function isLoopbackHost(hostname: string): boolean {
  const name = hostname.toLowerCase();
  return name === "localhost" || name === "[::1]" || name === "::1" || /^127(?:\.[0-9]{1,3}){3}$/.test(name);
}

/**
 * The URL origin of a registry: `http://` for loopback hosts or with `insecure`, `https://` otherwise.
 *
 * @param registry The reference's registry part (`127.0.0.1:5000`).
 * @param insecure Whether plain HTTP is allowed everywhere.
 * @returns For example `http://127.0.0.1:5000`.
 */
export function registryOrigin(registry: string, insecure: boolean): string {
  const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  const hostname = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
  return `${insecure || isLoopbackHost(hostname) ? "http" : "https"}://${host}`;
}

/** One request for {@linkcode RegistryClient.send}. */
export interface RegistryRequest {
  /** HTTP method. */
  method: string;
  /** Absolute URL (from {@linkcode RegistryClient.url} or a checked `Location`). */
  url: string;
  /** Extra headers. */
  headers?: Record<string, string>;
  /** Request body; kept as bytes so the request can be sent again after an authentication challenge. */
  body?: Uint8Array;
  /** The statuses that mean success for this step. */
  expect: readonly number[];
  /** Replaces the operation's signal (to cancel an upload after the operation itself was aborted). */
  signal?: AbortSignal;
}

/** Talks to one repository of one registry. */
export class RegistryClient {
  /** `http(s)://host[:port]`. */
  readonly origin: string;
  /** The repository path, as used in API URLs. */
  readonly repository: string;
  /** Request-body bytes sent so far, retries included. */
  bytesSent = 0;
  /** Scopes requested from a token server besides this repository's (e.g. the source of a blob mount). */
  readonly extraScopes: string[] = [];

  readonly #scope: string;
  readonly #insecure: boolean;
  readonly #loopback: boolean;
  readonly #credentials: RegistryCredentials | undefined;
  readonly #signal: AbortSignal | undefined;
  #authorization: string | undefined;

  /**
   * @param ref The registry and repository.
   * @param actions The token scope actions needed: `pull` or `pull,push`.
   * @param options Transport, credentials and cancellation.
   */
  constructor(ref: OciReference, actions: "pull" | "pull,push", options: RegistryOptions) {
    this.#insecure = options.insecure === true;
    this.origin = registryOrigin(ref.registry, this.#insecure);
    this.#loopback = isLoopbackHost(new URL(this.origin).hostname);
    this.repository = ref.registry === DOCKER_HUB && !ref.repository.includes("/")
      ? `library/${ref.repository}`
      : ref.repository;
    this.#scope = `repository:${this.repository}:${actions}`;
    this.#credentials = options.credentials;
    this.#signal = options.signal;
    if (this.#credentials !== undefined && "token" in this.#credentials) {
      this.#authorization = `Bearer ${this.#credentials.token}`;
    }
  }

  /**
   * The API URL of a path under this repository.
   *
   * @param path For example `blobs/sha256:…` or `manifests/v1`.
   */
  url(path: string): string {
    return `${this.origin}/v2/${this.repository}/${path}`;
  }

  /**
   * Resolves a `Location` header against the request URL and applies the transport policy to it.
   *
   * @param location The header value.
   * @param base The URL of the request that returned it.
   * @param purpose What the URL is for, for error messages.
   * @throws {OciContentError} When it is missing or not an http(s) URL.
   * @throws {InsecureRegistryError} When it is plain HTTP to a host that may not use it.
   */
  resolve(location: string | null, base: string, purpose: string): string {
    let url: URL | undefined;
    try {
      if (location !== null && location !== "") url = new URL(location, base);
    } catch {
      // reported below
    }
    if (url === undefined) {
      throw new OciContentError(
        "InvalidField",
        "registry response",
        "Location header",
        location ?? "missing",
        "a URL",
      );
    }
    this.#checkUrl(url, purpose);
    return url.href;
  }

  #checkUrl(url: URL, purpose: string): void {
    if (url.protocol === "https:") return;
    if (url.protocol !== "http:") {
      throw new OciContentError(
        "InvalidField",
        "registry response",
        `URL for ${purpose}`,
        url.href,
        "an http(s) URL",
      );
    }
    if (this.#insecure || (this.#loopback && isLoopbackHost(url.hostname))) return;
    throw new InsecureRegistryError(url.href, purpose);
  }

  /**
   * The error to throw when reading a response body fails: the abort reason when the operation was
   * cancelled, else a {@linkcode RegistryConnectionError} (the connection broke mid-body).
   *
   * @param method The request's method.
   * @param url The request's URL.
   * @param error What the body stream threw.
   */
  readError(method: string, url: string, error: unknown): unknown {
    return this.#signal?.aborted ? this.#signal.reason : new RegistryConnectionError(method, url, error);
  }

  /**
   * Sends a request, answering authentication challenges (once per challenge) and following redirects of
   * GET and HEAD requests, and returns the response when its status is one of `request.expect`. The caller
   * must consume or cancel the response body.
   *
   * @throws {RegistryAuthError} For 401 that credentials cannot answer, and 403.
   * @throws {RegistryError} For any other unexpected status.
   * @throws {RegistryConnectionError} When no HTTP answer arrives.
   */
  async send(request: RegistryRequest): Promise<Response> {
    const answered = new Set<string>();
    for (;;) {
      const response = await this.#fetchFollowing(request);
      const status = response.status;
      if (status !== 401 && status !== 403 && request.expect.includes(status)) return response;
      const challenge = parseChallenge(response.headers.get("www-authenticate"));
      const init: RegistryErrorInit = {
        method: request.method,
        url: response.url || request.url,
        status,
        codes: await readErrorCodes(response),
      };
      if (status === 403) throw new RegistryAuthError(init, challenge?.scheme ?? "", "access denied");
      if (status !== 401) {
        throw new RegistryError({ ...init, expected: request.expect.map((s) => `HTTP ${s}`).join(" or ") });
      }
      await this.#answer(challenge, init, answered);
    }
  }

  /** Sets the Authorization for the next attempt, or throws when the challenge cannot be answered. */
  async #answer(challenge: Challenge | null, init: RegistryErrorInit, answered: Set<string>): Promise<void> {
    if (challenge === null) {
      throw new RegistryAuthError(
        init,
        "",
        "the registry sent no WWW-Authenticate challenge snapvm can answer",
      );
    }
    const scheme = challenge.scheme.toLowerCase();
    const credentials = this.#credentials;
    if (scheme === "basic") {
      if (credentials === undefined) {
        throw new RegistryAuthError(init, "Basic", "the registry asks for credentials and none were given");
      }
      if (!("username" in credentials)) {
        throw new RegistryAuthError(
          init,
          "Basic",
          "the registry asks for a user name and password, not a token",
        );
      }
      if (answered.has("basic")) {
        throw new RegistryAuthError(init, "Basic", "the user name or password was refused");
      }
      answered.add("basic");
      this.#authorization = basicAuthorization(credentials.username, credentials.password);
      return;
    }
    if (scheme === "bearer") {
      const key = `bearer ${challenge.params.scope ?? ""}`;
      if (answered.has(key) || (credentials !== undefined && "token" in credentials)) {
        const why = challenge.params.error === "insufficient_scope" || init.codes.some((c) =>
            c.code === "DENIED"
          )
          ? `the token does not grant ${challenge.params.scope ?? "the requested access"}`
          : "the registry refused the token";
        throw new RegistryAuthError(init, "Bearer", why);
      }
      answered.add(key);
      this.#authorization = `Bearer ${await this.#fetchToken(challenge, init)}`;
      return;
    }
    throw new RegistryAuthError(
      init,
      challenge.scheme,
      `authentication scheme ${challenge.scheme} is not supported`,
    );
  }

  /** Asks the challenge's token server (the distribution token protocol) for a token. */
  async #fetchToken(challenge: Challenge, init: RegistryErrorInit): Promise<string> {
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? "");
    } catch {
      throw new RegistryAuthError(
        init,
        "Bearer",
        `the challenge's realm ${JSON.stringify(realm ?? null)} is not a URL`,
      );
    }
    this.#checkUrl(url, "a token realm");
    if (challenge.params.service !== undefined) url.searchParams.set("service", challenge.params.service);
    const scopes = new Set([...(challenge.params.scope ?? "").split(" "), this.#scope, ...this.extraScopes]);
    scopes.delete("");
    for (const scope of scopes) url.searchParams.append("scope", scope);
    const headers: Record<string, string> = {};
    const credentials = this.#credentials;
    if (credentials !== undefined && "username" in credentials) {
      headers.Authorization = basicAuthorization(credentials.username, credentials.password);
    }
    const response = await this.#fetch("GET", url.href, headers, undefined, undefined);
    const tokenInit: RegistryErrorInit = {
      method: "GET",
      url: url.href,
      status: response.status,
      codes: response.ok ? [] : await readErrorCodes(response),
    };
    if (response.status === 401 || response.status === 403) {
      const why = credentials === undefined
        ? "the token server requires credentials and none were given"
        : "the token server refused the credentials";
      throw new RegistryAuthError(tokenInit, "Bearer", why);
    }
    if (response.status !== 200) {
      throw new RegistryError({ ...tokenInit, expected: "HTTP 200" }, "Token server refused");
    }
    const json = parseJsonObject(
      await readStreamLimited(response.body, MAX_SMALL_RESPONSE_SIZE, "token response"),
      "token response",
    );
    const token = typeof json.token === "string" && json.token !== "" ? json.token : json.access_token;
    if (typeof token !== "string" || !TOKEN_TEXT.test(token)) {
      throw new OciContentError(
        "InvalidField",
        "token response",
        "token",
        token ?? null,
        "a token of visible ASCII",
      );
    }
    return token;
  }

  async #fetchFollowing(request: RegistryRequest): Promise<Response> {
    let url = request.url;
    const follow = request.method === "GET" || request.method === "HEAD";
    for (let hop = 0;; hop++) {
      const headers: Record<string, string> = { ...request.headers };
      // Credentials go only to the registry itself, never to a storage backend it redirects to.
      if (this.#authorization !== undefined && new URL(url).origin === this.origin) {
        headers.Authorization = this.#authorization;
      }
      const response = await this.#fetch(request.method, url, headers, request.body, request.signal);
      if (!follow || !REDIRECTS.has(response.status)) return response;
      await response.body?.cancel();
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryError({
          method: request.method,
          url,
          status: response.status,
          codes: [],
          expected: `at most ${MAX_REDIRECTS} redirects`,
        });
      }
      url = this.resolve(response.headers.get("location"), url, "a redirect");
    }
  }

  async #fetch(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: Uint8Array | undefined,
    override: AbortSignal | undefined,
  ): Promise<Response> {
    const signal = override ?? this.#signal;
    signal?.throwIfAborted();
    if (body !== undefined) this.bytesSent += body.byteLength;
    try {
      return await fetch(url, {
        method,
        headers,
        body: body as BodyInit | undefined,
        redirect: "manual",
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new RegistryConnectionError(method, url, error);
    }
  }
}

function basicAuthorization(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

/**
 * Reads a registry error body (`{"errors": [...]}`) into codes, consuming the body. Never throws: an
 * unreadable body gives no codes.
 *
 * @param response The error response.
 * @returns Up to 16 codes.
 */
export async function readErrorCodes(response: Response): Promise<RegistryErrorCode[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readStreamLimited(response.body, MAX_SMALL_RESPONSE_SIZE, "error body");
  } catch {
    return [];
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return [];
  }
  const errors = (json as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return [];
  const codes: RegistryErrorCode[] = [];
  for (const entry of errors.slice(0, MAX_ERROR_CODES)) {
    const e = entry as Record<string, unknown> | null;
    if (typeof e?.code !== "string" || !/^[A-Z0-9_]{1,64}$/.test(e.code)) continue;
    const code: RegistryErrorCode = {
      code: e.code,
      message: typeof e.message === "string" ? e.message.slice(0, 500) : "",
    };
    if (e.detail !== undefined && e.detail !== null) code.detail = JSON.stringify(e.detail).slice(0, 500);
    codes.push(code);
  }
  return codes;
}
