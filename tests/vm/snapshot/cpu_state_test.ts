/**
 * CPU state that is not in a snapshot (x87/SSE: MXCSR and the XMM registers) must not survive `restore()`:
 * a restored sandbox must behave exactly like a fresh sandbox made from the same snapshot, and nothing a
 * call left in the registers may reach calls made after the restore (restore is how a sandbox is reset
 * between untrusted requests).
 *
 * The test guest has no function that touches these registers, so this file builds a small guest with the
 * guest SDK and the project's gcc recipe (skipped where gcc is missing, like tests/guest_build_test.ts).
 */
import assert from "node:assert/strict";
import { GUEST_CFLAGS, haveGcc } from "../../../guest/build.ts";
import { MultiUseSandbox, type Snapshot, UninitializedSandbox } from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import { withTempDir } from "./_util.ts";

const SOURCE = `
#include "snapvm.h"
static int32_t set_mxcsr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint32_t v = a[0].u32;
  __asm__ volatile("ldmxcsr %0" : : "m"(v));
  return SV_OK;
}
static int32_t get_mxcsr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint32_t v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  r->u32 = v;
  return SV_OK;
}
static int32_t set_xmm15(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint64_t v = a[0].u64;
  __asm__ volatile("movq %0, %%xmm15" : : "r"(v) : "xmm15");
  return SV_OK;
}
static int32_t get_xmm15(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v;
  __asm__ volatile("movq %%xmm15, %0" : "=r"(v));
  r->u64 = v;
  return SV_OK;
}
/* AVX: the upper half of ymm15 (only where the CPU lets a CPL3 guest use AVX; otherwise #UD). */
static int32_t set_ymm15_high(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint64_t v = a[0].u64;
  __asm__ volatile("vmovq %0, %%xmm14; vinserti128 $1, %%xmm14, %%ymm15, %%ymm15" : : "r"(v) : "xmm14", "xmm15");
  return SV_OK;
}
static int32_t get_ymm15_high(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v;
  __asm__ volatile("vextracti128 $1, %%ymm15, %%xmm14; vmovq %%xmm14, %0" : "=r"(v) : : "xmm14");
  r->u64 = v;
  return SV_OK;
}
void guest_main(void) {
  static const sv_type u32p[] = {SV_U32}, u64p[] = {SV_U64};
  sv_register("SetMxcsr", SV_VOID, 1, u32p, set_mxcsr);
  sv_register("GetMxcsr", SV_U32, 0, NULL, get_mxcsr);
  sv_register("SetXmm15", SV_VOID, 1, u64p, set_xmm15);
  sv_register("GetXmm15", SV_U64, 0, NULL, get_xmm15);
  sv_register("SetYmm15High", SV_VOID, 1, u64p, set_ymm15_high);
  sv_register("GetYmm15High", SV_U64, 0, NULL, get_ymm15_high);
}
`;

const GUEST_DIR = new URL("../../../guest/", import.meta.url).pathname;

/** Builds the guest above into `dir` and returns its path. */
async function buildCpuGuest(dir: string): Promise<string> {
  Deno.writeTextFileSync(`${dir}/cpu.c`, SOURCE);
  const runtime = [...Deno.readDirSync(`${GUEST_DIR}runtime`)]
    .map((e) => e.name).filter((n) => /\.(c|S)$/.test(n)).sort().map((n) => `runtime/${n}`);
  const out = `${dir}/cpuguest`;
  const r = await new Deno.Command("gcc", {
    args: [...GUEST_CFLAGS, ...runtime, `${dir}/cpu.c`, "-lgcc", "-o", out],
    cwd: GUEST_DIR,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(r.success, new TextDecoder().decode(r.stderr));
  return out;
}

const ROUND_TOWARD_ZERO = 0x7f80; // every exception masked, RC = 11
const SECRET = 0x5ec2e7_5ec2e7n;

/** MXCSR and XMM15 as the guest sees them. */
function cpuState(sbx: MultiUseSandbox): { mxcsr: number; xmm15: bigint } {
  return { mxcsr: sbx.call("GetMxcsr") as number, xmm15: sbx.call("GetXmm15") as bigint };
}

/** What a fresh sandbox made from `snap` sees. */
function freshState(snap: Snapshot): { mxcsr: number; xmm15: bigint } {
  using fresh = MultiUseSandbox.fromSnapshot(snap);
  return cpuState(fresh);
}

const gcc = await haveGcc();

if (!gcc) {
  Deno.test({ name: "restore resets the x87/SSE state (needs gcc)", ignore: true, fn() {} });
} else {
  vmTest("restore resets the x87/SSE state: MXCSR and XMM registers do not survive it", async () => {
    await withTempDir(async (dir) => {
      const guest = await buildCpuGuest(dir);
      using sbx = new UninitializedSandbox(guest).evolve();
      using snap = sbx.snapshot();
      const fresh = freshState(snap);
      assert.deepEqual(cpuState(sbx), fresh, "a new sandbox and one from its snapshot agree");

      sbx.call("SetMxcsr", ROUND_TOWARD_ZERO);
      sbx.call("SetXmm15", SECRET);
      assert.deepEqual(cpuState(sbx), { mxcsr: ROUND_TOWARD_ZERO, xmm15: SECRET });
      sbx.restore(snap); // copy-back path
      assert.deepEqual(cpuState(sbx), fresh, "after restore (copy-back), as in a fresh sandbox");

      sbx.call("SetMxcsr", ROUND_TOWARD_ZERO);
      sbx.call("SetXmm15", SECRET);
      using other = sbx.snapshot();
      sbx.restore(snap); // remap path
      assert.deepEqual(cpuState(sbx), fresh, "after restore (remap), as in a fresh sandbox");
      sbx.restore(other);
      assert.deepEqual(cpuState(sbx), freshState(other), "after restore to a later snapshot");

      using pre = new UninitializedSandbox(guest).snapshot();
      using fromPre = MultiUseSandbox.fromSnapshot(pre);
      const freshPre = cpuState(fromPre);
      fromPre.call("SetMxcsr", ROUND_TOWARD_ZERO);
      fromPre.call("SetXmm15", SECRET);
      fromPre.restore(pre); // init runs again
      assert.deepEqual(cpuState(fromPre), freshPre, "after restore to an Initialise snapshot");
    });
  });

  vmTest("restore resets the AVX state too, where the guest can use AVX", async () => {
    await withTempDir(async (dir) => {
      const guest = await buildCpuGuest(dir);
      using sbx = new UninitializedSandbox(guest).evolve();
      using snap = sbx.snapshot();
      try {
        sbx.call("SetYmm15High", SECRET);
      } catch (e) {
        // No AVX at CPL3 here (#UD): nothing can be left in the upper halves.
        assert.equal((e as Error).name, "GuestCrashedError", String(e));
        return;
      }
      assert.equal(sbx.call("GetYmm15High"), SECRET);
      using fresh = MultiUseSandbox.fromSnapshot(snap);
      const expected = fresh.call("GetYmm15High");
      sbx.restore(snap);
      assert.equal(sbx.call("GetYmm15High"), expected, "after restore, as in a fresh sandbox");
      assert.notEqual(expected, SECRET);
    });
  });

  vmTest("a sandbox made from a snapshot sees no vector state of sandboxes closed before it", async () => {
    await withTempDir(async (dir) => {
      const guest = await buildCpuGuest(dir);
      using pre = new UninitializedSandbox(guest).snapshot();
      let avx = true;
      const state = (sbx: MultiUseSandbox) => ({
        ...cpuState(sbx),
        ymm15High: avx ? sbx.call("GetYmm15High") : 0n,
      });
      for (let round = 0; round < 6; round++) {
        // Closed after a successful call, so its VM may be kept and reused for the next sandbox.
        const sbx = MultiUseSandbox.fromSnapshot(pre);
        const clean = state(sbx);
        assert.deepEqual(clean, { mxcsr: 0x1f80, xmm15: 0n, ymm15High: 0n }, `round ${round}: a new sandbox`);
        sbx.call("SetMxcsr", ROUND_TOWARD_ZERO);
        sbx.call("SetXmm15", SECRET);
        try {
          if (avx) sbx.call("SetYmm15High", SECRET);
        } catch {
          avx = false; // no AVX at CPL3 here; that call poisoned the sandbox, so its VM is not reused
        }
        sbx.close();
      }
    });
  });
}
