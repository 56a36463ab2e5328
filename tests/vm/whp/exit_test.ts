// Exit decoding from 224-byte contexts laid out as winhvplatformdefs.h describes (offsets from
// ffi/windows/winhvplatform.ts, themselves pinned against the header).
import assert from "node:assert/strict";
import { EXIT_CONTEXT as X, WHV_RUN_VP_EXIT_REASON as R } from "../../../ffi/windows/winhvplatform.ts";
import { decodeExit } from "../../../vm/whp/exit.ts";

function ctx(reason: number, rip = 0x200010n, length = 2): DataView {
  const v = new DataView(new ArrayBuffer(X.SIZE));
  v.setUint32(X.EXIT_REASON, reason, true);
  v.setBigUint64(X.RIP, rip, true);
  v.setUint8(X.INSTRUCTION_LENGTH, 0xf0 | length); // Cr8 in the high nibble must not leak into the length
  return v;
}

Deno.test("a 32-bit out to port 0xE1 decodes with the value and the RIP to resume at", () => {
  const v = ctx(R.X64IoPortAccess, 0x200010n, 2);
  v.setUint32(X.IO_ACCESS_INFO, 1 | (4 << 1), true); // IsWrite, AccessSize 4
  v.setUint16(X.IO_PORT, 0xe1, true);
  v.setBigUint64(X.IO_RAX, 0xdead_beef_1234_5678n, true);
  const d = decodeExit(v);
  assert.deepEqual(d.exit, {
    kind: "io",
    port: 0xe1,
    size: 4,
    write: true,
    string: false,
    value: 0x1234_5678,
  });
  assert.equal(d.instructionLength, 2);
  assert.equal(d.nextRip, 0x200012n, "WHP does not advance RIP: the backend resumes at rip + length");
});

Deno.test("in, 1-byte and string accesses decode as such", () => {
  const v = ctx(R.X64IoPortAccess);
  v.setUint32(X.IO_ACCESS_INFO, 1 << 1, true); // read, size 1
  v.setUint16(X.IO_PORT, 0x60, true);
  assert.deepEqual(decodeExit(v).exit, {
    kind: "io",
    port: 0x60,
    size: 1,
    write: false,
    string: false,
    value: 0,
  });
  v.setUint32(X.IO_ACCESS_INFO, 1 | (2 << 1) | (1 << 4) | (1 << 5), true); // rep outsw
  const e = decodeExit(v).exit;
  assert.equal(e.kind === "io" && e.string && e.size === 2 && e.value === 0, true);
});

Deno.test("memory, cancel, halt, triple fault and failures", () => {
  const m = ctx(R.MemoryAccess);
  m.setUint32(X.MEMORY_ACCESS_INFO, 1 | (1 << 2), true); // write, GpaUnmapped
  m.setBigUint64(X.MEMORY_GPA, 0x12_3000n, true);
  const md = decodeExit(m);
  assert.deepEqual(md.exit, { kind: "mmio", gpa: 0x12_3000n, write: true });
  assert.equal(md.access, "write");
  m.setUint32(X.MEMORY_ACCESS_INFO, 2, true);
  assert.equal(decodeExit(m).access, "execute");
  assert.equal(decodeExit(ctx(R.Canceled)).exit.kind, "interrupted");
  assert.equal(decodeExit(ctx(R.X64Halt)).exit.kind, "halt");
  assert.equal(decodeExit(ctx(R.UnrecoverableException)).exit.kind, "shutdown");
  const u = ctx(R.UnsupportedFeature);
  u.setUint32(X.UNSUPPORTED_FEATURE_CODE, 2, true);
  u.setBigUint64(X.UNSUPPORTED_FEATURE_PARAMETER, 0x38n, true);
  assert.deepEqual(decodeExit(u).exit, {
    kind: "failed",
    reason: "WHP does not support what the guest did: task switch through a TSS (parameter 0x38)",
  });
  assert.deepEqual(decodeExit(ctx(0x1234)).exit, {
    kind: "failed",
    reason: "unexpected WHP exit reason 0x1234",
  });
  assert.equal(decodeExit(ctx(R.X64IoPortAccess)).nextRip !== undefined, true);
  assert.equal(decodeExit(ctx(R.X64Halt)).nextRip, undefined);
  assert.throws(() => decodeExit(new DataView(new ArrayBuffer(100))), RangeError);
});
