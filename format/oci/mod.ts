/**
 * Shipping snapvm snapshots through OCI registries and OCI image-layout directories.
 *
 * A snapshot is an OCI image manifest whose config blob (`application/vnd.snapvm.snapshot.config.v1+json`)
 * holds the header fields, hashes and host functions as JSON, and whose layer
 * (`application/vnd.snapvm.snapshot.v1.hls`) is the `.hls` file itself. A delta file is pushed with its
 * chain: the complete base first, then each delta (`application/vnd.snapvm.snapshot.delta.v1`), so a base
 * the registry holds is not sent again. Pulled snapshots land in a local content-addressed cache (a delta
 * with its bases beside it), so a snapshot is never downloaded twice, and its cached path can be loaded with
 * `Snapshot.fromFileCached` (or pull and load in one step with `Snapshot.pull`).
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
 * @example Push a delta over a pushed base: only the delta is sent
 * ```ts ignore
 * import { pushSnapshotFile } from "./mod.ts";
 *
 * await pushSnapshotFile("base.hls", "127.0.0.1:5000/team/guest:base");
 * const pushed = await pushSnapshotFile("step2.hls", "127.0.0.1:5000/team/guest:v2"); // base.hls next to it
 * console.log(pushed.blobs.map((b) => b.outcome)); // ["exists", "uploaded", "uploaded"]
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
