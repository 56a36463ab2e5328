/**
 * Test helper: pushes arbitrary blobs and manifests to a test registry with plain `fetch`, to put content
 * there that snapvm itself would never push (foreign manifests, lying configs, wrong sizes).
 *
 * @module
 */

import { sha256Digest } from "../../../format/oci/mod.ts";

/** Uploads one blob monolithically (`POST`, then `PUT ?digest=` with the bytes); returns its digest. */
export async function rawPushBlob(host: string, repository: string, bytes: Uint8Array): Promise<string> {
  const digest = sha256Digest(bytes);
  const start = await fetch(`http://${host}/v2/${repository}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  if (start.status !== 202) throw new Error(`POST upload: HTTP ${start.status}`);
  const url = new URL(start.headers.get("location")!, `http://${host}/`);
  url.searchParams.set("digest", digest);
  const put = await fetch(url, {
    method: "PUT",
    body: bytes as BodyInit,
    headers: { "Content-Type": "application/octet-stream" },
  });
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`PUT blob: HTTP ${put.status}`);
  return digest;
}

/** Puts a manifest under a tag; returns its digest. */
export async function rawPushManifest(
  host: string,
  repository: string,
  tag: string,
  manifest: unknown,
  contentType = "application/vnd.oci.image.manifest.v1+json",
): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const response = await fetch(`http://${host}/v2/${repository}/manifests/${tag}`, {
    method: "PUT",
    body: bytes as BodyInit,
    headers: { "Content-Type": contentType },
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`PUT manifest: HTTP ${response.status} ${text}`);
  return sha256Digest(bytes);
}

/** The files under a directory, recursively (relative paths), or `[]` when it does not exist. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(`${dir}${sub}`)) {
      if (entry.isDirectory) await walk(`${sub}/${entry.name}`);
      else out.push(`${sub}/${entry.name}`.slice(1));
    }
  };
  try {
    await walk("");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort();
}
