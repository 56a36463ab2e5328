/**
 * Options shared by every operation that talks to a registry: transport security, credentials and
 * cancellation.
 *
 * @module
 */

/**
 * Credentials for a registry: a user name and password (sent as HTTP Basic to a registry that asks for
 * Basic, or to the token server of a registry that asks for Bearer tokens), or a ready bearer token sent to
 * the registry as is.
 *
 * @example
 * ```ts
 * import type { RegistryCredentials } from "./options.ts";
 *
 * const basic: RegistryCredentials = { username: "ci", password: "secret" };
 * const bearer: RegistryCredentials = { token: "eyJhbGciOi…" };
 * console.log("username" in basic, "token" in bearer); // true true
 * ```
 */
export type RegistryCredentials = { username: string; password: string } | { token: string };

/**
 * How to reach a registry.
 *
 * Transport: registries on loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over plain
 * HTTP, as container tools do for local registries; every other host over HTTPS. `insecure: true` allows
 * plain HTTP for any host, for registries on a trusted private network. Redirects, upload locations and
 * token realms follow the same rule, so a registry cannot send snapvm (or the credentials) to plain HTTP.
 *
 * @example
 * ```ts
 * import type { RegistryOptions } from "./options.ts";
 *
 * const options: RegistryOptions = { credentials: { username: "ci", password: "secret" }, insecure: false };
 * console.log(options.insecure);
 * ```
 */
export interface RegistryOptions {
  /** Allow plain HTTP to hosts that are not loopback. Default `false`. */
  insecure?: boolean;
  /** Credentials, used only when the registry asks for them. */
  credentials?: RegistryCredentials;
  /**
   * Cancels the operation. Nothing half-written stays in the cache, and an upload in progress is cancelled
   * at the registry (best effort). The operation rejects with `signal.reason`. There is no built-in time
   * limit: pass `AbortSignal.timeout(ms)` for one.
   */
  signal?: AbortSignal;
}
