/**
 * Test helper: a real CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1, on a free port,
 * with its storage in a temporary directory, stopped and removed when disposed.
 *
 * @module
 */

/** Where Debian installs the registry. */
export const REGISTRY_BINARY = "/usr/bin/docker-registry";

/** Whether the registry binary is installed here. */
export const hasRegistry: boolean = (() => {
  try {
    return Deno.statSync(REGISTRY_BINARY).isFile;
  } catch {
    return false;
  }
})();

let warned = false;

/**
 * Registers a test that needs the registry. Without it the test is skipped with one loud line, except in CI
 * (`CI=true`), where a missing registry fails the test.
 */
export function registryTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  if (hasRegistry) {
    Deno.test({ name, fn });
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`${REGISTRY_BINARY} is missing in CI: install the docker-registry package`);
    });
  } else {
    if (!warned) {
      console.error(
        `!!! ${REGISTRY_BINARY} not found: SKIPPING every OCI registry test (apt-get install docker-registry) !!!`,
      );
      warned = true;
    }
    Deno.test({ name, ignore: true, fn });
  }
}

/** Authentication the registry enforces. */
export type RegistryAuth =
  | { htpasswd: string }
  | { token: { realm: string; service: string; issuer: string; rootCertBundle: string } };

/** A running registry. */
export interface Registry extends AsyncDisposable {
  /** `127.0.0.1:PORT`, the reference's registry part. */
  host: string;
  /** The storage root directory. */
  storage: string;
  /** The file holding a blob's bytes in the registry's storage. */
  blobDataPath(digest: string): string;
  /** What the registry printed (for failure messages). */
  output(): string;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts a registry and waits until it answers `GET /v2/`. */
export async function startRegistry(options: { auth?: RegistryAuth } = {}): Promise<Registry> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-registry-" });
  try {
    for (let attempt = 0;; attempt++) {
      try {
        return await launch(dir, options.auth);
      } catch (error) {
        // Another process may have taken the free port between probing and binding: try another one.
        if (attempt >= 2) throw error;
      }
    }
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function launch(dir: string, auth: RegistryAuth | undefined): Promise<Registry> {
  const port = freePort();
  const storage = `${dir}/storage`;
  const config: Record<string, unknown> = {
    version: "0.1",
    log: { level: "warn", accesslog: { disabled: true } },
    storage: {
      filesystem: { rootdirectory: storage },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: crypto.randomUUID() },
    health: { storagedriver: { enabled: false } },
  };
  if (auth !== undefined && "htpasswd" in auth) {
    await Deno.writeTextFile(`${dir}/htpasswd`, auth.htpasswd);
    config.auth = { htpasswd: { realm: "snapvm-test", path: `${dir}/htpasswd` } };
  } else if (auth !== undefined) {
    await Deno.writeTextFile(`${dir}/bundle.pem`, auth.token.rootCertBundle);
    const { realm, service, issuer } = auth.token;
    config.auth = { token: { realm, service, issuer, rootcertbundle: `${dir}/bundle.pem` } };
  }
  // JSON is YAML: the registry reads it as its configuration file.
  await Deno.writeTextFile(`${dir}/config.yml`, JSON.stringify(config, null, 2));

  const child = new Deno.Command(REGISTRY_BINARY, {
    args: ["serve", `${dir}/config.yml`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true, // REGISTRY_* variables would override the file
    env: { PATH: "/usr/bin:/bin" },
  }).spawn();
  let output = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output = (output + text).slice(-65536);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    await status;
    await drained;
  };
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (exited) throw new Error(`docker-registry exited at start:\n${output}`);
      try {
        const response = await fetch(`http://127.0.0.1:${port}/v2/`);
        await response.body?.cancel();
        if (response.status === 200 || response.status === 401) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`docker-registry did not answer within 15 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    host: `127.0.0.1:${port}`,
    storage,
    blobDataPath(digest: string): string {
      const hex = digest.slice("sha256:".length);
      return `${storage}/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    },
    output: () => output,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A bcrypt htpasswd line (the only hash the registry accepts), made with the system's libcrypt. */
export function htpasswdLine(user: string, password: string): string {
  const lib = Deno.dlopen("libcrypt.so.1", {
    crypt_gensalt: { parameters: ["buffer", "u64", "pointer", "i32"], result: "pointer" },
    crypt: { parameters: ["buffer", "buffer"], result: "pointer" },
  });
  try {
    const cstr = (text: string) => new TextEncoder().encode(`${text}\0`);
    // Cost 5: the registry checks the password on every request; a high cost only slows the tests.
    const salt = lib.symbols.crypt_gensalt(cstr("$2b$"), 5n, null, 0);
    if (salt === null) throw new Error("crypt_gensalt failed: libcrypt has no bcrypt");
    const setting = new Deno.UnsafePointerView(salt).getCString();
    const hashed = lib.symbols.crypt(cstr(password), cstr(setting));
    if (hashed === null) throw new Error("crypt failed");
    const hash = new Deno.UnsafePointerView(hashed).getCString();
    if (!hash.startsWith("$2b$")) throw new Error(`crypt returned ${hash}, not a bcrypt hash`);
    return `${user}:${hash}\n`;
  } finally {
    lib.close();
  }
}
