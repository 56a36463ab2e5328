import assert from "node:assert/strict";
import { defaultCacheDir } from "../../../format/oci/mod.ts";

function withEnv(vars: Record<string, string | undefined>, fn: () => void): void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  };
  apply(vars);
  try {
    fn();
  } finally {
    apply(saved);
  }
}

Deno.test("defaultCacheDir lives under Deno's cache directory", () => {
  withEnv(
    { DENO_DIR: "/opt/deno-cache" },
    () => assert.equal(defaultCacheDir(), "/opt/deno-cache/snapvm/oci"),
  );
  if (Deno.build.os === "linux") {
    withEnv({ DENO_DIR: undefined, XDG_CACHE_HOME: "/xdg" }, () => {
      assert.equal(defaultCacheDir(), "/xdg/deno/snapvm/oci");
    });
    withEnv({ DENO_DIR: undefined, XDG_CACHE_HOME: undefined, HOME: "/home/u" }, () => {
      assert.equal(defaultCacheDir(), "/home/u/.cache/deno/snapvm/oci");
    });
    withEnv({ DENO_DIR: undefined, XDG_CACHE_HOME: undefined, HOME: undefined }, () => {
      assert.throws(() => defaultCacheDir(), { name: "OciCacheError", message: /pass `cacheDir`/ });
    });
  }
});
