import assert from "node:assert/strict";
import {
  EXCEPTION_FRAME_ADDR,
  EXCEPTION_FRAME_SIZE,
  readExceptionFrame,
  STUB_SIZE,
  stubVector,
} from "../../../vm/machine/exception_frame.ts";
import { EXC_STACK_TOP, IDT_ADDR, IDT_VECTORS, PORT_EXCEPTION, STUB_ADDR } from "../../../vm/machine/abi.ts";
import { writeSystemArea } from "../../../vm/machine/system_area.ts";
import { computeLayout } from "../../../vm/machine/layout.ts";

Deno.test("the frame sits at the top of the exception stack: error code, RIP, CS, RFLAGS, RSP, SS", () => {
  assert.equal(EXCEPTION_FRAME_ADDR + EXCEPTION_FRAME_SIZE, EXC_STACK_TOP);
  const bytes = new Uint8Array(EXCEPTION_FRAME_SIZE);
  const v = new DataView(bytes.buffer);
  [0xen, 0x202784n, 0x33n, 0x10246n, 0x239f00n, 0x2bn].forEach((x, i) => v.setBigUint64(i * 8, x, true));
  assert.deepEqual(readExceptionFrame(bytes), {
    errorCode: 0xen,
    rip: 0x202784n,
    cs: 0x33n,
    rflags: 0x10246n,
    rsp: 0x239f00n,
    ss: 0x2bn,
    rax: undefined, // ABI 2: the stub overwrites RAX
  });
  assert.throws(() => readExceptionFrame(bytes.subarray(8)), RangeError);
});

Deno.test("stubVector finds the vector of every stub the system area writes, from any byte of it", () => {
  const layout = computeLayout({
    imageEnd: 0x204000,
    heapSize: 0x10000,
    stackSize: 0x10000,
    inputDataSize: 0x4000,
    outputDataSize: 0x4000,
  });
  const mem = new Uint8Array(0x200000);
  writeSystemArea(mem, layout, []);
  const v = new DataView(mem.buffer);
  for (let vector = 0; vector < IDT_VECTORS; vector++) {
    const gate = IDT_ADDR + vector * 16;
    const handler = v.getUint16(gate, true) | (v.getUint16(gate + 6, true) << 16);
    assert.equal(handler, STUB_ADDR + vector * STUB_SIZE);
    // The `out` to the exception port lies inside the stub: the vCPU stops right after it.
    const out = mem.subarray(handler, handler + STUB_SIZE).findIndex((b, i, a) =>
      b === 0xe7 && a[i + 1] === PORT_EXCEPTION
    );
    assert.ok(out > 0, `vector ${vector}`);
    assert.equal(stubVector(BigInt(handler + out + 2)), vector);
    assert.equal(stubVector(BigInt(handler)), vector);
    assert.equal(stubVector(BigInt(handler + STUB_SIZE - 1)), vector);
  }
  assert.equal(stubVector(BigInt(STUB_ADDR - 1)), undefined);
  assert.equal(stubVector(BigInt(STUB_ADDR + IDT_VECTORS * STUB_SIZE)), undefined);
  assert.equal(stubVector(0x200000n), undefined);
});
