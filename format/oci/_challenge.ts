/**
 * Parsing `WWW-Authenticate` challenges (RFC 7235) as registries send them. Internal.
 *
 * @module
 */

/** A parsed challenge: the scheme and its parameters (names lower-cased). */
export interface Challenge {
  /** `Basic`, `Bearer`, … as sent (compare case-insensitively). */
  scheme: string;
  /** `realm`, `service`, `scope`, `error`, … */
  params: Record<string, string>;
}

/** Longest header parsed; registries send a few hundred bytes. */
const MAX_HEADER_LENGTH = 16 * 1024;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/**
 * Parses the first challenge of a `WWW-Authenticate` header.
 *
 * @param header The header value, or `null`.
 * @returns The challenge, or `null` when there is none or it does not parse.
 */
export function parseChallenge(header: string | null): Challenge | null {
  if (header === null || header.length > MAX_HEADER_LENGTH) return null;
  let rest = header.trim();
  const scheme = TOKEN.exec(rest);
  if (scheme === null) return null;
  rest = rest.slice(scheme[0].length);
  const params: Record<string, string> = {};
  for (;;) {
    rest = rest.replace(/^[\s,]+/, "");
    if (rest === "") break;
    const name = TOKEN.exec(rest);
    if (name === null) break;
    const after = rest.slice(name[0].length).replace(/^\s*/, "");
    if (!after.startsWith("=")) break; // the start of a second challenge: only the first one is used
    rest = after.slice(1).replace(/^\s*/, "");
    let value: string;
    if (rest.startsWith('"')) {
      let i = 1;
      value = "";
      while (i < rest.length && rest[i] !== '"') {
        if (rest[i] === "\\" && i + 1 < rest.length) i++;
        value += rest[i];
        i++;
      }
      if (i >= rest.length) return null; // unterminated quoted string
      rest = rest.slice(i + 1);
    } else {
      const token = TOKEN.exec(rest);
      if (token === null) return null;
      value = token[0];
      rest = rest.slice(value.length);
    }
    params[name[0].toLowerCase()] = value;
  }
  return { scheme: scheme[0], params };
}
