/**
 * Media types, annotation keys and size limits of snapvm's OCI artifacts. Every limit that bounds bytes from
 * a registry or an image-layout directory is defined here, once.
 *
 * @module
 */

import { MAX_DELTA_CHAIN, MAX_SNAPSHOT_FILE_SIZE } from "../constants.ts";

/**
 * Media type of an OCI image manifest (the only manifest kind snapvm writes or reads).
 *
 * @example
 * ```ts
 * import { OCI_MANIFEST_MEDIA_TYPE } from "./constants.ts";
 *
 * console.log(OCI_MANIFEST_MEDIA_TYPE); // application/vnd.oci.image.manifest.v1+json
 * ```
 */
export const OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";

/**
 * Media type of an OCI image index (`index.json` of an image-layout directory; refused as a pulled manifest).
 *
 * @example
 * ```ts
 * import { OCI_INDEX_MEDIA_TYPE } from "./constants.ts";
 *
 * console.log(OCI_INDEX_MEDIA_TYPE); // application/vnd.oci.image.index.v1+json
 * ```
 */
export const OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json";

/**
 * Media type of the manifest's config blob: the snapshot's header fields, hashes and host functions as JSON
 * (see `SnapshotConfig`), readable without downloading the memory blob.
 *
 * @example
 * ```ts
 * import { SNAPSHOT_CONFIG_MEDIA_TYPE } from "./constants.ts";
 *
 * console.log(SNAPSHOT_CONFIG_MEDIA_TYPE); // application/vnd.snapvm.snapshot.config.v1+json
 * ```
 */
export const SNAPSHOT_CONFIG_MEDIA_TYPE = "application/vnd.snapvm.snapshot.config.v1+json";

/**
 * Media type of a layer that is a whole, complete `.hls` snapshot file, byte for byte (the first layer of
 * every snapvm manifest). The `v1` is the version of this artifact layout, not of the `.hls` format: the config's
 * `formatVersion` says which `.hls` version the file is.
 *
 * @example
 * ```ts
 * import { SNAPSHOT_LAYER_MEDIA_TYPE } from "./constants.ts";
 *
 * console.log(SNAPSHOT_LAYER_MEDIA_TYPE); // application/vnd.snapvm.snapshot.v1.hls
 * ```
 */
export const SNAPSHOT_LAYER_MEDIA_TYPE = "application/vnd.snapvm.snapshot.v1.hls";

/**
 * Media type of a delta layer: a whole `.hls` delta file, byte for byte (a version-2 file with a BASE
 * section), stacked on the layer before it in the manifest. Layer 0 of a manifest is always a complete
 * snapshot (`SNAPSHOT_LAYER_MEDIA_TYPE`); every later layer is a delta whose recorded base `blob_hash` is the
 * layer below's, with a chain depth equal to its index.
 *
 * @example
 * ```ts
 * import { SNAPSHOT_DELTA_LAYER_MEDIA_TYPE } from "./constants.ts";
 *
 * console.log(SNAPSHOT_DELTA_LAYER_MEDIA_TYPE); // application/vnd.snapvm.snapshot.delta.v1
 * ```
 */
export const SNAPSHOT_DELTA_LAYER_MEDIA_TYPE = "application/vnd.snapvm.snapshot.delta.v1";

/**
 * Layer annotation holding the layer's own BLAKE3 `blob_hash` (64 hex digits), so a puller can find a layer
 * it already holds under another digest, and a delta layer's base can be matched without downloading it.
 *
 * @example
 * ```ts
 * import { BLOB_HASH_ANNOTATION } from "./constants.ts";
 *
 * console.log(BLOB_HASH_ANNOTATION); // vnd.snapvm.snapshot.blob-hash
 * ```
 */
export const BLOB_HASH_ANNOTATION = "vnd.snapvm.snapshot.blob-hash";

/**
 * The standard annotation naming a manifest in an image layout's `index.json` (its tag).
 *
 * @example
 * ```ts
 * import { REF_NAME_ANNOTATION } from "./constants.ts";
 *
 * console.log(REF_NAME_ANNOTATION); // org.opencontainers.image.ref.name
 * ```
 */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/**
 * Largest manifest accepted or written: 4 MiB, the limit the CNCF distribution registry applies too.
 *
 * @example
 * ```ts
 * import { MAX_MANIFEST_SIZE } from "./constants.ts";
 *
 * console.log(MAX_MANIFEST_SIZE); // 4194304
 * ```
 */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/**
 * Largest config blob accepted: 4 MiB. A config lists at most 4096 host-function signatures, far below this.
 *
 * @example
 * ```ts
 * import { MAX_CONFIG_SIZE } from "./constants.ts";
 *
 * console.log(MAX_CONFIG_SIZE); // 4194304
 * ```
 */
export const MAX_CONFIG_SIZE = 4 * 1024 * 1024;

/**
 * Largest `index.json` of an image-layout directory accepted: 4 MiB.
 *
 * @example
 * ```ts
 * import { MAX_INDEX_SIZE } from "./constants.ts";
 *
 * console.log(MAX_INDEX_SIZE); // 4194304
 * ```
 */
export const MAX_INDEX_SIZE = 4 * 1024 * 1024;

/**
 * Largest snapshot layer accepted: the largest `.hls` file the loader accepts (`MAX_SNAPSHOT_FILE_SIZE`). A
 * descriptor announcing more is refused before any download.
 *
 * @example
 * ```ts
 * import { MAX_SNAPSHOT_LAYER_SIZE } from "./constants.ts";
 *
 * console.log(MAX_SNAPSHOT_LAYER_SIZE > 1024 ** 3); // true
 * ```
 */
export const MAX_SNAPSHOT_LAYER_SIZE: number = MAX_SNAPSHOT_FILE_SIZE;

/**
 * Most layers a snapvm manifest may have: one complete snapshot plus a delta per level of the deepest chain
 * a loader accepts (`MAX_DELTA_CHAIN`).
 *
 * @example
 * ```ts
 * import { MAX_LAYERS } from "./constants.ts";
 *
 * console.log(MAX_LAYERS); // 9
 * ```
 */
export const MAX_LAYERS: number = 1 + MAX_DELTA_CHAIN;

/**
 * Largest error body or token-server response read from a registry: 1 MiB. Longer ones are cut (error
 * bodies) or refused (token responses).
 *
 * @example
 * ```ts
 * import { MAX_SMALL_RESPONSE_SIZE } from "./constants.ts";
 *
 * console.log(MAX_SMALL_RESPONSE_SIZE); // 1048576
 * ```
 */
export const MAX_SMALL_RESPONSE_SIZE = 1024 * 1024;

/**
 * Default size of one upload chunk (one `PATCH` request): 8 MiB. Push holds at most one chunk in memory, and
 * an interrupted upload resumes at a chunk boundary.
 *
 * @example
 * ```ts
 * import { DEFAULT_CHUNK_SIZE } from "./constants.ts";
 *
 * console.log(DEFAULT_CHUNK_SIZE); // 8388608
 * ```
 */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

/**
 * Most HTTP redirects followed for one request.
 *
 * @example
 * ```ts
 * import { MAX_REDIRECTS } from "./constants.ts";
 *
 * console.log(MAX_REDIRECTS); // 5
 * ```
 */
export const MAX_REDIRECTS = 5;

/**
 * How many times one blob upload is resumed or restarted after a broken connection before push gives up.
 *
 * @example
 * ```ts
 * import { MAX_UPLOAD_RETRIES } from "./constants.ts";
 *
 * console.log(MAX_UPLOAD_RETRIES); // 3
 * ```
 */
export const MAX_UPLOAD_RETRIES = 3;
