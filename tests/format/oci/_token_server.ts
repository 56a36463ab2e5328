/**
 * Test helper: a minimal token server for the registry's `token` authentication (the distribution "Docker
 * Registry v2 authentication via central service" protocol), on 127.0.0.1.
 *
 * It holds an ECDSA P-256 key generated per run and a self-signed X.509 certificate for it (built here in
 * DER: the registry's `rootcertbundle` must be a certificate). `GET /token?service=…&scope=…` with optional
 * HTTP Basic credentials returns `{"token": JWT}`: an ES256 JWT whose `kid` is the libtrust fingerprint of
 * the key (how registry 2.8 finds the trusted key), granting the intersection of the requested actions and
 * the user's allowed actions, per the spec.
 *
 * @module
 */

/** What one user may do (`pull`, `push`) and their password. */
export interface TokenUser {
  password: string;
  actions: string[];
}

/** A running token server. */
export interface TokenServer extends AsyncDisposable {
  /** The realm URL to configure in the registry. */
  realm: string;
  /** The registry's `service` name. */
  service: string;
  /** The `issuer` the registry must expect. */
  issuer: string;
  /** PEM of the signing certificate (the registry's `rootcertbundle`). */
  rootCertBundle: string;
  /** Every token request: user (or `""` for anonymous), scopes asked, and whether it was refused. */
  requests: { user: string; scopes: string[]; refused: boolean }[];
}

// ---- DER (only what a certificate needs) ----

function der(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((sum, p) => sum + p.byteLength, 0);
  const header = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : [tag, 0x82, length >> 8, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let offset = header.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
const seq = (...parts: Uint8Array[]) => der(0x30, ...parts);
const bytes = (...values: number[]) => new Uint8Array(values);
/** A DER INTEGER from unsigned big-endian bytes: minimal, with a 0 byte when the top bit is set. */
function integer(value: Uint8Array): Uint8Array {
  let start = 0;
  while (start < value.byteLength - 1 && value[start] === 0) start++;
  const trimmed = value.subarray(start);
  return der(0x02, ...(trimmed[0] & 0x80 ? [bytes(0), trimmed] : [trimmed]));
}
/** ecdsa-with-SHA256, 1.2.840.10045.4.3.2. */
const ECDSA_SHA256 = seq(bytes(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02));
function name(commonName: string): Uint8Array {
  const cn = bytes(0x06, 0x03, 0x55, 0x04, 0x03); // 2.5.4.3
  return seq(der(0x31, seq(cn, der(0x0c, new TextEncoder().encode(commonName)))));
}
function utcTime(date: Date): Uint8Array {
  const two = (n: number) => String(n).padStart(2, "0");
  const text = `${two(date.getUTCFullYear() % 100)}${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}` +
    `${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  return der(0x17, new TextEncoder().encode(text));
}

async function sign(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data as BufferSource),
  );
}

/** A self-signed X.509 v3 certificate for the key pair, valid from an hour ago for a day. */
async function selfSignedCertificate(keys: CryptoKeyPair, commonName: string): Promise<Uint8Array> {
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const now = Date.now();
  const tbs = seq(
    der(0xa0, integer(bytes(2))), // version v3
    integer(crypto.getRandomValues(new Uint8Array(8))),
    ECDSA_SHA256,
    name(commonName),
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 86400_000))),
    name(commonName),
    spki,
  );
  const raw = await sign(keys.privateKey, tbs);
  const signature = seq(integer(raw.subarray(0, 32)), integer(raw.subarray(32)));
  return seq(tbs, ECDSA_SHA256, der(0x03, bytes(0), signature));
}

function base64(data: Uint8Array): string {
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary);
}
const base64url = (data: Uint8Array) =>
  base64(data).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/**
 * The libtrust key ID the registry computes for a public key: SHA-256 of its DER SubjectPublicKeyInfo, the
 * first 240 bits in base32, in 12 groups of 4 separated by `:`.
 */
async function libtrustKeyId(spki: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", spki as BufferSource)).subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let text = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      text += alphabet[(value >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return text.match(/.{4}/g)!.join(":");
}

/** Starts the token server. `anonymous` lists what requests without credentials may do. */
export async function startTokenServer(
  users: Record<string, TokenUser>,
  anonymous: string[] = [],
): Promise<TokenServer> {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
    "verify",
  ]);
  const certificate = await selfSignedCertificate(keys, "snapvm test token issuer");
  const kid = await libtrustKeyId(new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)));
  const pem = `-----BEGIN CERTIFICATE-----\n${
    base64(certificate).match(/.{1,64}/g)!.join("\n")
  }\n-----END CERTIFICATE-----\n`;
  const service = "snapvm-test-registry";
  const issuer = "snapvm-test-issuer";
  const requests: TokenServer["requests"] = [];

  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      const scopes = url.searchParams.getAll("scope");
      let user = "";
      let allowed = anonymous;
      const header = request.headers.get("authorization");
      if (header !== null) {
        const [scheme, encoded] = header.split(" ");
        const [name, password] = scheme === "Basic" ? atob(encoded ?? "").split(":") : [];
        if (name === undefined || users[name]?.password !== password) {
          requests.push({ user: name ?? "?", scopes, refused: true });
          return Response.json({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }, {
            status: 401,
          });
        }
        user = name;
        allowed = users[name].actions;
      }
      requests.push({ user, scopes, refused: false });
      // Grant the intersection of what was asked and what the user may do (the spec's rule).
      const access = scopes.map((scope) => {
        const last = scope.lastIndexOf(":");
        const first = scope.indexOf(":");
        return {
          type: scope.slice(0, first),
          name: scope.slice(first + 1, last),
          actions: scope.slice(last + 1).split(",").filter((a) => allowed.includes(a)),
        };
      });
      const now = Math.floor(Date.now() / 1000);
      const head = { typ: "JWT", alg: "ES256", kid };
      const claims = {
        iss: issuer,
        sub: user,
        aud: service,
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: crypto.randomUUID(),
        access,
      };
      const encode = (value: unknown) => base64url(new TextEncoder().encode(JSON.stringify(value)));
      const signingInput = `${encode(head)}.${encode(claims)}`;
      const signature = await sign(keys.privateKey, new TextEncoder().encode(signingInput));
      const token = `${signingInput}.${base64url(signature)}`;
      return Response.json({
        token,
        access_token: token,
        expires_in: 300,
        issued_at: new Date().toISOString(),
      });
    },
  );
  return {
    realm: `http://127.0.0.1:${server.addr.port}/token`,
    service,
    issuer,
    rootCertBundle: pem,
    requests,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}
