import assert from "node:assert/strict";
import { GuestAddressError } from "../../../vm/debug/errors.ts";
import {
  mappedRanges,
  PAGE_1G,
  PAGE_2M,
  readVirtual,
  translate,
  writeVirtual,
} from "../../../vm/debug/page_walk.ts";
import { computeLayout } from "../../../vm/machine/layout.ts";
import { INFO_ADDR } from "../../../vm/machine/abi.ts";
import { writeSystemArea } from "../../../vm/machine/system_area.ts";
import { NX, P, PlainMemory, PS, RW, TestGuest, TESTGUEST_SEGMENTS, US } from "./_guest_memory.ts";

function expectAddressError(fn: () => unknown, problem: string, detail?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof GuestAddressError, String(e));
    assert.equal(e.name, "GuestAddressError");
    assert.equal(e.problem, problem);
    if (detail) assert.match(e.message, detail);
    return true;
  });
}

Deno.test("translation of the test guest follows the ABI memory map", () => {
  const g = new TestGuest();
  const code = translate(g, g.cr3(), 0x200010n);
  assert.deepEqual(code, {
    address: 0x200010n,
    gpa: 0x200010,
    pageSize: 4096,
    user: true,
    writable: false,
    executable: true,
  });
  const bss = translate(g, g.cr3(), BigInt(TESTGUEST_SEGMENTS.data));
  assert.equal(bss.writable, true);
  assert.equal(bss.executable, false);
  const stub = translate(g, g.cr3(), 0x2000n);
  assert.equal(stub.user, false);
  assert.equal(stub.executable, true);
  expectAddressError(() => translate(g, g.cr3(), 0n), "not mapped", /PT entry 0 is not present/);
  expectAddressError(() => translate(g, g.cr3(), 0x5000n), "not mapped"); // page tables are not mapped
  expectAddressError(() => translate(g, g.cr3(), BigInt(g.layout.persistentEnd)), "not mapped"); // stack guard
  expectAddressError(() => translate(g, g.cr3(), 0x4000_0000n), "not mapped", /PDPT entry 1/);
  expectAddressError(() => translate(g, g.cr3(), 0x0000_8000_0000_0000n), "non-canonical");
  expectAddressError(() => translate(g, g.cr3(), 1n << 64n), "non-canonical");
  expectAddressError(() => translate(g, g.cr3(), -1n), "non-canonical");
  expectAddressError(() => translate(g, g.cr3(), 0xffff_8000_0000_0000n), "not mapped", /PML4 entry 256/);
});

Deno.test("the walker agrees with the page tables the sandbox really builds", () => {
  const layout = computeLayout({
    imageEnd: 0x209000,
    heapSize: 0x10000,
    stackSize: 0x10000,
    inputDataSize: 0x4000,
    outputDataSize: 0x4000,
  });
  const mem = new PlainMemory(
    layout.scratchBase + layout.scratchSize,
    layout.persistentSize,
    layout.scratchBase,
  );
  const segments = [
    { vaddr: 0x200000, memSize: 0x2e41, fileOffset: 0x1000, fileSize: 0x2e41, flags: 5 },
    { vaddr: 0x203000, memSize: 0x9f4, fileOffset: 0x4000, fileSize: 0x9f4, flags: 4 },
    { vaddr: 0x204000, memSize: 0x48b4, fileOffset: 0, fileSize: 0, flags: 6 },
  ];
  writeSystemArea(mem.bytes.subarray(0, layout.persistentSize), layout, segments);
  const ranges = mappedRanges(mem, 0x5000n, { includeSupervisor: true });
  const show = (r: (typeof ranges)[number]) =>
    `${r.start.toString(16)}+${r.size.toString(16)} ${r.user ? "u" : "s"}${r.writable ? "w" : "-"}${
      r.executable ? "x" : "-"
    }`;
  assert.deepEqual(ranges.map(show), [
    "1000+1000 sw-",
    "2000+1000 s-x",
    "3000+2000 sw-",
    // The info page (ABI 3: data and the entry code the guest runs) and the text coalesce.
    `${INFO_ADDR.toString(16)}+${(0x203000 - INFO_ADDR).toString(16)} u-x`,
    "203000+1000 u--",
    `204000+${(layout.persistentSize - 0x204000).toString(16)} uw-`, // .bss and heap coalesce
    `${layout.scratchBase.toString(16)}+${layout.scratchSize.toString(16)} uw-`,
  ]);
  assert.deepEqual(mappedRanges(mem, 0x5000n).map(show), ranges.slice(3).map(show));
});

/** Memory with page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT). */
function tables(size = 0x80_0000): PlainMemory {
  const m = new PlainMemory(size);
  m.entry(0x1000, BigInt(0x2000 | P | RW | US));
  m.entry(0x2000, BigInt(0x3000 | P | RW | US));
  return m;
}

Deno.test("2 MiB and 1 GiB pages translate with their offsets", () => {
  const m = tables();
  m.entry(0x3000 + 1 * 8, BigInt(0x40_0000 | P | RW | US | PS)); // VA 2 MiB → PA 4 MiB, 2 MiB page
  const t = translate(m, 0x1000n, 0x20_1234n);
  assert.equal(t.gpa, 0x40_1234);
  assert.equal(t.pageSize, PAGE_2M);
  m.entry(0x2000 + 1 * 8, BigInt(P | US | PS) | NX); // VA 1 GiB → PA 0, 1 GiB page, read-only, NX
  const g = translate(m, 0x1000n, 0x4000_0000n + 0x1234n);
  assert.equal(g.gpa, 0x1234);
  assert.equal(g.pageSize, PAGE_1G);
  assert.equal(g.writable, false);
  assert.equal(g.executable, false);
  // Permissions combine across levels: a supervisor PDPT entry makes everything below supervisor.
  m.entry(0x2000, BigInt(0x3000 | P | RW));
  assert.equal(translate(m, 0x1000n, 0x20_0000n).user, false);
});

Deno.test("hostile page tables are errors, never crashes", () => {
  const m = tables();
  // Entry pointing far outside guest memory.
  m.entry(0x3000, (1n << 51n) | BigInt(P | RW | US));
  expectAddressError(
    () => translate(m, 0x1000n, 0x1000n),
    "table outside guest memory",
    /PT at 0x8000000000000/,
  );
  // CR3 outside memory.
  expectAddressError(() => translate(m, 0xffff_f000n, 0n), "table outside guest memory", /PML4/);
  // PS in a PML4 entry is reserved; reserved bits in a 2 MiB entry too.
  m.entry(0x1000, BigInt(0x2000 | P | PS));
  expectAddressError(() => translate(m, 0x1000n, 0n), "reserved bit", /PML4 entry 0 has PS/);
  m.entry(0x1000, BigInt(0x2000 | P | RW | US));
  m.entry(0x3000, BigInt(0x40_0000 | 0x2000 | P | PS));
  expectAddressError(() => translate(m, 0x1000n, 0n), "reserved bit");
  // A table that points at itself: the walk has a fixed depth, so it ends (and maps the table).
  const loop = new PlainMemory(0x2000);
  loop.entry(0x1000, BigInt(0x1000 | P | RW | US));
  assert.equal(translate(loop, 0x1000n, 0n).gpa, 0x1000);
});

Deno.test("enumerating hostile tables stops at the limits", () => {
  // Every PML4 entry points back at the PML4: 512^3 PT visits without a limit.
  const loop = new PlainMemory(0x2000);
  for (let i = 0; i < 512; i++) loop.entry(0x1000 + i * 8, BigInt(0x1000 | P | RW | US));
  // Each PT maps 2 MiB of aliases: the byte limit trips first by default, the table limit when lower.
  expectAddressError(
    () => mappedRanges(loop, 0x1000n, { maxBytes: 0x400_0000 }),
    "too much mapped memory",
    /more than 67108864 bytes/,
  );
  expectAddressError(() => mappedRanges(loop, 0x1000n, { maxTables: 10 }), "too many page tables");
  // 1 GiB pages over 16 KiB of memory: only the backed part of each is listed ...
  const huge = new PlainMemory(0x4000);
  huge.entry(0x1000, BigInt(0x2000 | P | RW | US));
  for (let i = 0; i < 2; i++) huge.entry(0x2000 + i * 8, BigInt(P | RW | US | PS));
  const r = mappedRanges(huge, 0x1000n);
  assert.deepEqual(r.map((x) => [x.start, x.size]), [[0n, 0x4000], [0x4000_0000n, 0x4000]]);
  // ... but what is mapped counts, backed or not: a PDPT full of them maps 512 GiB with two tables.
  for (let i = 0; i < 512; i++) huge.entry(0x2000 + i * 8, BigInt(P | RW | US | PS));
  expectAddressError(() => mappedRanges(huge, 0x1000n), "too much mapped memory", /more than 4294967296/);
  expectAddressError(() => mappedRanges(huge, 0x1000n, { maxBytes: 0x10000 }), "too much mapped memory");
  // A table outside memory.
  const bad = new PlainMemory(0x2000);
  bad.entry(0x1000, BigInt(0x10_0000 | P));
  expectAddressError(() => mappedRanges(bad, 0x1000n), "table outside guest memory");
});

Deno.test("upper-half mappings get canonical (sign-extended) addresses", () => {
  const m = tables();
  m.entry(0x1000 + 511 * 8, BigInt(0x2000 | P | RW | US));
  m.entry(0x3000, BigInt(0x4000 | P | RW | US));
  m.entry(0x4000, BigInt(0x5000 | P | US));
  const r = mappedRanges(m, 0x1000n);
  assert.deepEqual(r.map((x) => x.start.toString(16)), ["0", "ffffff8000000000"]);
  assert.equal(translate(m, 0x1000n, 0xffff_ff80_0000_0010n).gpa, 0x5010);
});

Deno.test("reads stop at the first unmapped page; writes are all or nothing and never hit the system area", () => {
  const g = new TestGuest();
  const cr3 = g.cr3();
  // Read across the end of the heap into the guard page: only the heap part comes back.
  const end = g.layout.persistentEnd;
  g.bytes.fill(7, end - 4, end);
  const buf = new Uint8Array(16);
  assert.equal(readVirtual(g, cr3, BigInt(end - 4), buf), 4);
  assert.deepEqual([...buf.subarray(0, 4)], [7, 7, 7, 7]);
  assert.equal(readVirtual(g, cr3, 0n, buf), 0);
  // Supervisor pages are readable (the debugger's user owns the host) ...
  assert.equal(readVirtual(g, cr3, 0x2000n, buf), 16);
  assert.equal(buf[0], 0xf4);
  // ... but never writable, and a write that would cross into one writes nothing at all.
  expectAddressError(() => writeVirtual(g, cr3, 0x2000n, new Uint8Array([1])), "supervisor page");
  expectAddressError(() => writeVirtual(g, cr3, BigInt(end - 2), new Uint8Array(4)), "not mapped");
  assert.deepEqual([...g.bytes.subarray(end - 4, end)], [7, 7, 7, 7]);
  assert.equal(g.writes.length, 0);
  // Read-only user pages (code) are writable host-side: that is how breakpoints get in.
  writeVirtual(g, cr3, 0x200000n, new Uint8Array([0xcc]));
  assert.equal(g.bytes[0x200000], 0xcc);
});

Deno.test("a mapped page whose frame is not guest RAM reads as nothing and cannot be written", () => {
  const g = new TestGuest();
  // Point the first heap page's PT entry at the unbacked guard page.
  const heapPte = 0x8000 + (g.layout.heapBase / 4096) * 8;
  g.entry(heapPte, BigInt(g.layout.persistentEnd | P | RW | US) | NX);
  assert.equal(readVirtual(g, g.cr3(), BigInt(g.layout.heapBase), new Uint8Array(8)), 0);
  expectAddressError(
    () => writeVirtual(g, g.cr3(), BigInt(g.layout.heapBase), new Uint8Array(8)),
    "page outside guest memory",
  );
  const ranges = mappedRanges(g, g.cr3());
  assert.ok(
    !ranges.some((r) =>
      r.start <= BigInt(g.layout.heapBase) && r.start + BigInt(r.size) > BigInt(g.layout.heapBase)
    ),
  );
});
