// Pins every WinHvPlatform value snapvm uses against the Windows SDK header as mingw-w64 ships it
// (mingw-w64-headers/include/winhvplatformdefs.h and winhvplatform.h). Each quoted line is copied from the
// header; the test reads the number out of the quote, so a value and its evidence cannot drift apart.
import assert from "node:assert/strict";
import { layout, valueOf } from "./_layout.ts";
import {
  CANCEL_SYMBOL,
  EXIT_CONTEXT,
  REGISTER_VALUE,
  SEGMENT,
  TABLE,
  WHV_CAPABILITY_CODE,
  WHV_MAP_GPA_RANGE_FLAGS,
  WHV_MEMORY_ACCESS_TYPE,
  WHV_PARTITION_PROPERTY_CODE,
  WHV_REGISTER_NAME,
  WHV_RUN_VP_EXIT_REASON,
} from "../../../ffi/windows/winhvplatform.ts";

function pins(table: Record<string, number>, quoted: Record<string, string>): void {
  for (const [name, line] of Object.entries(quoted)) {
    assert.equal(table[name], valueOf(line), `${name}: ${line}`);
  }
}

Deno.test("WHV_REGISTER_NAME values match winhvplatformdefs.h", () => {
  pins(WHV_REGISTER_NAME, {
    Rax: "WHvX64RegisterRax = 0x00000000,",
    Rcx: "WHvX64RegisterRcx = 0x00000001,",
    Rdx: "WHvX64RegisterRdx = 0x00000002,",
    Rbx: "WHvX64RegisterRbx = 0x00000003,",
    Rsp: "WHvX64RegisterRsp = 0x00000004,",
    Rbp: "WHvX64RegisterRbp = 0x00000005,",
    Rsi: "WHvX64RegisterRsi = 0x00000006,",
    Rdi: "WHvX64RegisterRdi = 0x00000007,",
    R8: "WHvX64RegisterR8 = 0x00000008,",
    R9: "WHvX64RegisterR9 = 0x00000009,",
    R10: "WHvX64RegisterR10 = 0x0000000A,",
    R11: "WHvX64RegisterR11 = 0x0000000B,",
    R12: "WHvX64RegisterR12 = 0x0000000C,",
    R13: "WHvX64RegisterR13 = 0x0000000D,",
    R14: "WHvX64RegisterR14 = 0x0000000E,",
    R15: "WHvX64RegisterR15 = 0x0000000F,",
    Rip: "WHvX64RegisterRip = 0x00000010,",
    Rflags: "WHvX64RegisterRflags = 0x00000011,",
    Es: "WHvX64RegisterEs = 0x00000012,",
    Cs: "WHvX64RegisterCs = 0x00000013,",
    Ss: "WHvX64RegisterSs = 0x00000014,",
    Ds: "WHvX64RegisterDs = 0x00000015,",
    Fs: "WHvX64RegisterFs = 0x00000016,",
    Gs: "WHvX64RegisterGs = 0x00000017,",
    Ldtr: "WHvX64RegisterLdtr = 0x00000018,",
    Tr: "WHvX64RegisterTr = 0x00000019,",
    Idtr: "WHvX64RegisterIdtr = 0x0000001A,",
    Gdtr: "WHvX64RegisterGdtr = 0x0000001B,",
    Cr0: "WHvX64RegisterCr0 = 0x0000001C,",
    Cr2: "WHvX64RegisterCr2 = 0x0000001D,",
    Cr3: "WHvX64RegisterCr3 = 0x0000001E,",
    Cr4: "WHvX64RegisterCr4 = 0x0000001F,",
    Cr8: "WHvX64RegisterCr8 = 0x00000020,",
    Dr0: "WHvX64RegisterDr0 = 0x00000021,",
    Dr1: "WHvX64RegisterDr1 = 0x00000022,",
    Dr2: "WHvX64RegisterDr2 = 0x00000023,",
    Dr3: "WHvX64RegisterDr3 = 0x00000024,",
    Dr6: "WHvX64RegisterDr6 = 0x00000025,",
    Dr7: "WHvX64RegisterDr7 = 0x00000026,",
    XCr0: "WHvX64RegisterXCr0 = 0x00000027,",
    Tsc: "WHvX64RegisterTsc = 0x00002000,",
    Efer: "WHvX64RegisterEfer = 0x00002001,",
    KernelGsBase: "WHvX64RegisterKernelGsBase = 0x00002002,",
    ApicBase: "WHvX64RegisterApicBase = 0x00002003,",
    Pat: "WHvX64RegisterPat = 0x00002004,",
    SysenterCs: "WHvX64RegisterSysenterCs = 0x00002005,",
    SysenterEip: "WHvX64RegisterSysenterEip = 0x00002006,",
    SysenterEsp: "WHvX64RegisterSysenterEsp = 0x00002007,",
    Star: "WHvX64RegisterStar = 0x00002008,",
    Lstar: "WHvX64RegisterLstar = 0x00002009,",
    Cstar: "WHvX64RegisterCstar = 0x0000200A,",
    Sfmask: "WHvX64RegisterSfmask = 0x0000200B,",
    TscAux: "WHvX64RegisterTscAux = 0x0000207B,",
    PendingInterruption: "WHvRegisterPendingInterruption = 0x80000000,",
    InterruptState: "WHvRegisterInterruptState = 0x80000001,",
    PendingEvent: "WHvRegisterPendingEvent = 0x80000002,",
  });
  assert.equal(Object.keys(WHV_REGISTER_NAME).length, 56, "every register name is pinned above");
});

Deno.test("exit reasons, map flags, capability and property codes match winhvplatformdefs.h", () => {
  pins(WHV_RUN_VP_EXIT_REASON, {
    None: "WHvRunVpExitReasonNone = 0x00000000,",
    MemoryAccess: "WHvRunVpExitReasonMemoryAccess = 0x00000001,",
    X64IoPortAccess: "WHvRunVpExitReasonX64IoPortAccess = 0x00000002,",
    UnrecoverableException: "WHvRunVpExitReasonUnrecoverableException = 0x00000004,",
    InvalidVpRegisterValue: "WHvRunVpExitReasonInvalidVpRegisterValue = 0x00000005,",
    UnsupportedFeature: "WHvRunVpExitReasonUnsupportedFeature = 0x00000006,",
    X64InterruptWindow: "WHvRunVpExitReasonX64InterruptWindow = 0x00000007,",
    X64Halt: "WHvRunVpExitReasonX64Halt = 0x00000008,",
    X64ApicEoi: "WHvRunVpExitReasonX64ApicEoi = 0x00000009,",
    X64MsrAccess: "WHvRunVpExitReasonX64MsrAccess = 0x00001000,",
    X64Cpuid: "WHvRunVpExitReasonX64Cpuid = 0x00001001,",
    Exception: "WHvRunVpExitReasonException = 0x00001002,",
    X64Rdtsc: "WHvRunVpExitReasonX64Rdtsc = 0x00001003,",
    Hypercall: "WHvRunVpExitReasonHypercall = 0x00001005,",
    Canceled: "WHvRunVpExitReasonCanceled = 0x00002001",
  });
  pins(WHV_MAP_GPA_RANGE_FLAGS, {
    None: "WHvMapGpaRangeFlagNone = 0x00000000,",
    Read: "WHvMapGpaRangeFlagRead = 0x00000001,",
    Write: "WHvMapGpaRangeFlagWrite = 0x00000002,",
    Execute: "WHvMapGpaRangeFlagExecute = 0x00000004,",
    TrackDirtyPages: "WHvMapGpaRangeFlagTrackDirtyPages = 0x00000008",
  });
  pins(WHV_CAPABILITY_CODE, {
    HypervisorPresent: "WHvCapabilityCodeHypervisorPresent = 0x00000000",
    Features: ",WHvCapabilityCodeFeatures = 0x00000001",
  });
  pins(WHV_PARTITION_PROPERTY_CODE, {
    ProcessorCount: "WHvPartitionPropertyCodeProcessorCount = 0x00001fff",
  });
  pins(WHV_MEMORY_ACCESS_TYPE, {
    Read: "WHvMemoryAccessRead = 0,",
    Write: "WHvMemoryAccessWrite = 1,",
    Execute: "WHvMemoryAccessExecute = 2",
  });
});

Deno.test("WHV_X64_SEGMENT_REGISTER and WHV_X64_TABLE_REGISTER layouts", () => {
  const seg = layout(`
    UINT64 Base;
    UINT32 Limit;
    UINT16 Selector;
            UINT16 SegmentType:4;
            UINT16 NonSystemSegment:1;
            UINT16 DescriptorPrivilegeLevel:2;
            UINT16 Present:1;
            UINT16 Reserved:4;
            UINT16 Available:1;
            UINT16 Long:1;
            UINT16 Default:1;
            UINT16 Granularity:1;
  `);
  assert.equal(seg.size, SEGMENT.SIZE); // C_ASSERT(sizeof(WHV_X64_SEGMENT_REGISTER) == 16);
  assert.equal(seg.offsets.Base, SEGMENT.BASE);
  assert.equal(seg.offsets.Limit, SEGMENT.LIMIT);
  assert.equal(seg.offsets.Selector, SEGMENT.SELECTOR);
  assert.equal(seg.offsets.SegmentType, SEGMENT.ATTRIBUTES);
  // Bit positions inside Attributes: 4 + 1 + 2 + 1 + 4 reserved, then Available, Long, Default, Granularity.
  const widths = [["TYPE", 4], ["S", 1], ["DPL", 2], ["PRESENT", 1], ["RESERVED", 4], ["AVL", 1], ["L", 1], [
    "DB",
    1,
  ], ["G", 1]] as const;
  let bit = 0;
  for (const [name, width] of widths) {
    if (name !== "RESERVED") assert.equal((SEGMENT as Record<string, number>)[`${name}_SHIFT`], bit, name);
    bit += width;
  }
  assert.equal(bit, 16);
  const table = layout(`
    UINT16 Pad[3];
    UINT16 Limit;
    UINT64 Base;
  `);
  assert.equal(table.size, TABLE.SIZE); // C_ASSERT(sizeof(WHV_X64_TABLE_REGISTER) == 16);
  assert.equal(table.offsets.Limit, TABLE.LIMIT);
  assert.equal(table.offsets.Base, TABLE.BASE);
  // C_ASSERT(sizeof(WHV_REGISTER_VALUE) == 16); typedef union DECLSPEC_ALIGN(16) WHV_UINT128 {
  assert.deepEqual([REGISTER_VALUE.SIZE, REGISTER_VALUE.ALIGN], [16, 16]);
});

Deno.test("WHV_RUN_VP_EXIT_CONTEXT layout (224 bytes on x64)", () => {
  const vp = layout(`
    WHV_X64_VP_EXECUTION_STATE ExecutionState;
    UINT8 InstructionLength : 4;
    UINT8 Cr8 : 4;
    UINT8 Reserved;
    UINT32 Reserved2;
    WHV_X64_SEGMENT_REGISTER Cs;
    UINT64 Rip;
    UINT64 Rflags;
  `);
  assert.equal(vp.size, 40); // C_ASSERT(sizeof(WHV_X64_VP_EXIT_CONTEXT) == 40);
  const outer = layout(`
    WHV_RUN_VP_EXIT_REASON ExitReason;
    UINT32 Reserved;
    WHV_VP_EXIT_CONTEXT VpContext;
    UINT64 Payload;
  `);
  assert.equal(outer.offsets.ExitReason, EXIT_CONTEXT.EXIT_REASON);
  assert.equal(outer.offsets.VpContext, EXIT_CONTEXT.VP_CONTEXT);
  assert.equal(outer.offsets.Payload, EXIT_CONTEXT.PAYLOAD);
  const vpAt = (f: string) => EXIT_CONTEXT.VP_CONTEXT + vp.offsets[f];
  assert.equal(vpAt("ExecutionState"), EXIT_CONTEXT.EXECUTION_STATE);
  assert.equal(vpAt("InstructionLength"), EXIT_CONTEXT.INSTRUCTION_LENGTH);
  assert.equal(vpAt("Cs"), EXIT_CONTEXT.CS);
  assert.equal(vpAt("Rip"), EXIT_CONTEXT.RIP);
  assert.equal(vpAt("Rflags"), EXIT_CONTEXT.RFLAGS);

  const mem = layout(`
    UINT8 InstructionByteCount;
    UINT8 Reserved[3];
    UINT8 InstructionBytes[16];
    WHV_MEMORY_ACCESS_INFO AccessInfo;
    WHV_GUEST_PHYSICAL_ADDRESS Gpa;
    WHV_GUEST_VIRTUAL_ADDRESS Gva;
  `);
  assert.equal(mem.size, 40); // C_ASSERT(sizeof(WHV_MEMORY_ACCESS_CONTEXT) == 40);
  assert.equal(EXIT_CONTEXT.PAYLOAD + mem.offsets.AccessInfo, EXIT_CONTEXT.MEMORY_ACCESS_INFO);
  assert.equal(EXIT_CONTEXT.PAYLOAD + mem.offsets.Gpa, EXIT_CONTEXT.MEMORY_GPA);
  assert.equal(EXIT_CONTEXT.PAYLOAD + mem.offsets.Gva, EXIT_CONTEXT.MEMORY_GVA);

  const io = layout(`
    UINT8 InstructionByteCount;
    UINT8 Reserved[3];
    UINT8 InstructionBytes[16];
    WHV_X64_IO_PORT_ACCESS_INFO AccessInfo;
    UINT16 PortNumber;
    UINT16 Reserved2[3];
    UINT64 Rax;
    UINT64 Rcx;
    UINT64 Rsi;
    UINT64 Rdi;
    WHV_X64_SEGMENT_REGISTER Ds;
    WHV_X64_SEGMENT_REGISTER Es;
  `);
  assert.equal(io.size, 96); // C_ASSERT(sizeof(WHV_X64_IO_PORT_ACCESS_CONTEXT) == 96);
  assert.equal(EXIT_CONTEXT.PAYLOAD + io.offsets.AccessInfo, EXIT_CONTEXT.IO_ACCESS_INFO);
  assert.equal(EXIT_CONTEXT.PAYLOAD + io.offsets.PortNumber, EXIT_CONTEXT.IO_PORT);
  assert.equal(EXIT_CONTEXT.PAYLOAD + io.offsets.Rax, EXIT_CONTEXT.IO_RAX);

  const exc = layout(`
    UINT8 InstructionByteCount;
    UINT8 Reserved[3];
    UINT8 InstructionBytes[16];
    WHV_VP_EXCEPTION_INFO ExceptionInfo;
    UINT8 ExceptionType;
    UINT8 Reserved2[3];
    UINT32 ErrorCode;
    UINT64 ExceptionParameter;
  `);
  assert.equal(exc.size, 40); // C_ASSERT(sizeof(WHV_VP_EXCEPTION_CONTEXT) == 40);
  assert.equal(EXIT_CONTEXT.PAYLOAD + exc.offsets.ExceptionInfo, EXIT_CONTEXT.EXCEPTION_INFO);
  assert.equal(EXIT_CONTEXT.PAYLOAD + exc.offsets.ExceptionType, EXIT_CONTEXT.EXCEPTION_TYPE);
  assert.equal(EXIT_CONTEXT.PAYLOAD + exc.offsets.ErrorCode, EXIT_CONTEXT.EXCEPTION_ERROR_CODE);
  assert.equal(EXIT_CONTEXT.PAYLOAD + exc.offsets.ExceptionParameter, EXIT_CONTEXT.EXCEPTION_PARAMETER);

  const unsupported = layout(`
    WHV_X64_UNSUPPORTED_FEATURE_CODE FeatureCode;
    UINT32 Reserved;
    UINT64 FeatureParameter;
  `);
  assert.equal(unsupported.size, 16); // C_ASSERT(sizeof(WHV_X64_UNSUPPORTED_FEATURE_CONTEXT) == 16);
  assert.equal(EXIT_CONTEXT.PAYLOAD + unsupported.offsets.FeatureCode, EXIT_CONTEXT.UNSUPPORTED_FEATURE_CODE);
  assert.equal(
    EXIT_CONTEXT.PAYLOAD + unsupported.offsets.FeatureParameter,
    EXIT_CONTEXT.UNSUPPORTED_FEATURE_PARAMETER,
  );
  // C_ASSERT(sizeof(WHV_RUN_VP_EXIT_CONTEXT) == 224);
  assert.equal(EXIT_CONTEXT.SIZE, 224);
});

Deno.test("the cancel signature matches winhvplatform.h", () => {
  // HRESULT WINAPI WHvCancelRunVirtualProcessor(WHV_PARTITION_HANDLE Partition, UINT32 VpIndex, UINT32 Flags);
  assert.deepEqual([...CANCEL_SYMBOL.parameters], ["pointer", "u32", "u32"]);
  assert.equal(CANCEL_SYMBOL.result, "i32");
});
