// Pins every ABI constant together with ABI_VERSION: changing one without bumping the version (and
// updating this test and docs/ABI.md) fails here.
import assert from "node:assert/strict";
import * as abi from "../../../vm/machine/abi.ts";
import { ABI_VERSION } from "../../../mod.ts";

Deno.test("ABI constants are pinned to ABI_VERSION 4", () => {
  assert.equal(ABI_VERSION, 4);
  assert.deepEqual(
    {
      GDT_ADDR: abi.GDT_ADDR,
      TSS_ADDR: abi.TSS_ADDR,
      IDT_ADDR: abi.IDT_ADDR,
      STUB_ADDR: abi.STUB_ADDR,
      EXC_STACK_ADDR: abi.EXC_STACK_ADDR,
      EXC_STACK_TOP: abi.EXC_STACK_TOP,
      PML4_ADDR: abi.PML4_ADDR,
      PDPT_ADDR: abi.PDPT_ADDR,
      PD_ADDR: abi.PD_ADDR,
      PT_ADDR: abi.PT_ADDR,
      IMAGE_BASE: abi.IMAGE_BASE,
      FUNC_TABLE: [abi.FUNC_TABLE_ADDR, abi.FUNC_TABLE_SIZE],
      INFO: [abi.INFO_ADDR, abi.INFO_GENERATION, abi.INFO_SEED, abi.INFO_SEED_SIZE, abi.INFO_SIZE],
      FRAME: abi.FRAME,
      ERROR_CODE_VECTORS: [...abi.ERROR_CODE_VECTORS],
      SEL: [abi.SEL_KERNEL_CODE, abi.SEL_KERNEL_DATA, abi.SEL_USER_DATA, abi.SEL_USER_CODE, abi.SEL_TSS],
      TSS_LIMIT: abi.TSS_LIMIT,
      CR: [abi.CR0, abi.CR4, abi.EFER, abi.RFLAGS],
      PORTS: [abi.PORT_DONE, abi.PORT_HOST_CALL, abi.PORT_ABORT, abi.PORT_LOG, abi.PORT_EXCEPTION],
      BOOT_MAGIC: abi.BOOT_MAGIC,
      REQ: [abi.REQ_CALL, abi.REQ_LIST],
      STATUS: [abi.STATUS_OK, abi.STATUS_ERROR, abi.STATUS_NOT_FOUND],
      ERR: [
        abi.ERR_GUEST,
        abi.ERR_HOST_FUNCTION,
        abi.ERR_BAD_ARGUMENTS,
        abi.ERR_OUT_OF_MEMORY,
        abi.ERR_OUTPUT_TOO_LARGE,
      ],
      TAGS: abi.TAGS,
      LOG_LEVELS: abi.LOG_LEVELS,
      MAILBOX: [abi.MAILBOX_SIZE, abi.MAILBOX],
      MAILBOX_MODES: [abi.MAILBOX_MODE_EXIT, abi.MAILBOX_MODE_HOT],
      MAILBOX_KINDS: [abi.MAILBOX_DONE, abi.MAILBOX_HOST_CALL, abi.MAILBOX_LOG],
    },
    {
      GDT_ADDR: 0x1000,
      TSS_ADDR: 0x1100,
      IDT_ADDR: 0x1800,
      STUB_ADDR: 0x2000,
      EXC_STACK_ADDR: 0x3000,
      EXC_STACK_TOP: 0x5000,
      PML4_ADDR: 0x5000,
      PDPT_ADDR: 0x6000,
      PD_ADDR: 0x7000,
      PT_ADDR: 0x8000,
      IMAGE_BASE: 0x200000,
      FUNC_TABLE: [0x1e0000, 0x1f000],
      INFO: [0x1ff000, 0, 8, 32, 40],
      FRAME: { SS: -8, RSP: -16, RFLAGS: -24, CS: -32, RIP: -40, ERROR_CODE: -48, RAX: -56 },
      ERROR_CODE_VECTORS: [8, 10, 11, 12, 13, 14, 17, 21, 29, 30],
      SEL: [0x08, 0x10, 0x2b, 0x33, 0x38],
      TSS_LIMIT: 0x67 + 33,
      CR: [0x80050033n, 0x620n, 0xd00n, 0x2n],
      PORTS: [0xe0, 0xe1, 0xe2, 0xe3, 0xef],
      BOOT_MAGIC: 0x49425653,
      REQ: [1, 2],
      STATUS: [0, 1, 2],
      ERR: [1, 2, 3, 4, 5],
      TAGS: { void: 0, i32: 1, u32: 2, i64: 3, u64: 4, f32: 5, f64: 6, bool: 7, string: 8, bytes: 9 },
      LOG_LEVELS: ["trace", "debug", "info", "warn", "error", "off"],
      MAILBOX: [128, { HOST_SEQ: 0, MODE: 4, IDLE_TSC: 8, GUEST_SEQ: 64, KIND: 68 }],
      MAILBOX_MODES: [0, 1],
      MAILBOX_KINDS: [1, 2, 3],
    },
  );
});

Deno.test("the guest SDK header and runtime carry the same ABI version, info page and mailbox", () => {
  const h = Deno.readTextFileSync(new URL("../../../guest/include/snapvm.h", import.meta.url));
  assert.match(h, /#define\s+SNAPVM_ABI_VERSION\s+4\b/);
  const internal = Deno.readTextFileSync(new URL("../../../guest/runtime/internal.h", import.meta.url));
  const define = (name: string, value: number) =>
    assert.match(
      internal,
      new RegExp(`#define\\s+${name}\\s+(0x${value.toString(16)}|${value})\\b`, "i"),
      name,
    );
  define("SV_INFO_ADDR", abi.INFO_ADDR);
  define("SV_MAILBOX_SIZE", abi.MAILBOX_SIZE);
  define("SV_MB_MODE_HOT", abi.MAILBOX_MODE_HOT);
  define("SV_MB_DONE", abi.MAILBOX_DONE);
  define("SV_MB_HOST_CALL", abi.MAILBOX_HOST_CALL);
  define("SV_MB_LOG", abi.MAILBOX_LOG);
});
