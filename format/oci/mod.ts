/**
 * Shipping snapvm snapshots through OCI registries and OCI image-layout directories.
 *
 * A snapshot is an OCI image manifest whose config blob (`application/vnd.snapvm.snapshot.config.v1+json`)
 * holds the header fields, hashes and host functions as JSON, and whose layer
 * (`application/vnd.snapvm.snapshot.v1.hls`) is the `.hls` file itself. Pulled snapshots land in a local
 * content-addressed cache, so a snapshot is never downloaded twice, and its cached path can be loaded with
 * `Snapshot.fromFileCached`.
 *
 * @example Parse a reference
 * ```ts
 * import { formatReference, parseReference } from "./mod.ts";
 *
 * const ref = parseReference("127.0.0.1:5000/team/guest:v1");
 * console.log(ref.registry, ref.repository, ref.tag); // 127.0.0.1:5000 team/guest v1
 * console.log(formatReference({ ...ref, tag: "v2" })); // 127.0.0.1:5000/team/guest:v2
 * ```
 *
 * @example Push, pull, load
 * ```ts ignore
 * import { pullSnapshotFile, pushSnapshotFile } from "./mod.ts";
 *
 * const pushed = await pushSnapshotFile("guest.hls", "127.0.0.1:5000/team/guest:v1");
 * const pulled = await pullSnapshotFile(pushed.reference); // by digest: exactly those bytes
 * const snap = Snapshot.fromFileCached(pulled.path);
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./errors.ts";
export * from "./reference.ts";
export * from "./digest.ts";
export * from "./options.ts";
export * from "./config.ts";
export * from "./manifest.ts";
export * from "./cache.ts";
export * from "./push.ts";
export * from "./pull.ts";
export * from "./layout.ts";
export type { HeaderFieldName } from "../header.ts";
