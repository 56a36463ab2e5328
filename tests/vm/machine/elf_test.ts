import assert from "node:assert/strict";
import { GuestBinaryError, UninitializedSandbox } from "../../../mod.ts";
import { guestPath } from "../../_hypervisor.ts";

const good = Deno.readFileSync(guestPath("testguest"));

function mutated(f: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = good.slice();
  f(new DataView(b.buffer), b);
  return b;
}

function expectElfError(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => new UninitializedSandbox(bytes), (e: unknown) => {
    assert.ok(e instanceof GuestBinaryError, String(e));
    assert.equal(e.name, "GuestBinaryError");
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("a missing guest file is Deno's NotFound", () => {
  assert.throws(() => new UninitializedSandbox("/nonexistent/guest"), Deno.errors.NotFound);
});

Deno.test("bad ELF headers are rejected with the field named", () => {
  expectElfError(new Uint8Array(10), /at least the 64-byte ELF header/);
  expectElfError(mutated((_, b) => (b[0] = 0)), /bad magic/);
  expectElfError(mutated((_, b) => (b[4] = 1)), /EI_CLASS is 1/);
  expectElfError(mutated((_, b) => (b[5] = 2)), /EI_DATA is 2/);
  expectElfError(mutated((v) => v.setUint16(16, 3, true)), /e_type is 3/);
  expectElfError(mutated((v) => v.setUint16(18, 3, true)), /e_machine is 3/);
  expectElfError(mutated((v) => v.setUint16(54, 32, true)), /e_phentsize is 32/);
  expectElfError(mutated((v) => v.setUint16(56, 0, true)), /e_phnum is 0/);
  expectElfError(mutated((v) => v.setBigUint64(32, 1n << 62n, true)), /e_phoff|out of range/);
  expectElfError(mutated((v) => v.setBigUint64(32, BigInt(good.length - 10), true)), /past the end/);
  expectElfError(
    mutated((v) => v.setBigUint64(24, 0x100n, true)),
    /e_entry 0x100 is not inside an executable/,
  );
});

function firstLoad(v: DataView): number {
  const phoff = Number(v.getBigUint64(32, true));
  for (let i = 0; i < v.getUint16(56, true); i++) {
    if (v.getUint32(phoff + i * 56, true) === 1) return phoff + i * 56;
  }
  throw new Error("no PT_LOAD");
}

Deno.test("bad segments are rejected", () => {
  expectElfError(mutated((v) => v.setBigUint64(firstLoad(v) + 8, 1n << 40n, true)), /past the end/);
  expectElfError(
    mutated((v) => v.setBigUint64(firstLoad(v) + 32, 1n << 40n, true)),
    /exceeds p_memsz|past the end/,
  );
  expectElfError(mutated((v) => v.setBigUint64(firstLoad(v) + 40, 1n << 40n, true)), /outside/);
  expectElfError(mutated((v) => v.setBigUint64(firstLoad(v) + 16, 0x1000n, true)), /outside/);
  expectElfError(mutated((v) => v.setBigUint64(firstLoad(v) + 16, 0x200123n, true)), /not page aligned/);
  expectElfError(mutated((v) => v.setUint32(firstLoad(v) + 4, 7, true)), /writable and executable/);
  expectElfError(mutated((v) => v.setUint32(firstLoad(v), 3, true)), /PT_INTERP/);
});
