/**
 * Decoding of `WHV_RUN_VP_EXIT_CONTEXT` (224 bytes) into the neutral `VmExit`, plus what the backend needs to
 * finish an I/O exit: WHP, unlike KVM, does not advance RIP past an `in`/`out` it exits on, so the backend
 * writes `Rip = VpContext.Rip + VpContext.InstructionLength` before the next run.
 *
 * @module
 */
import {
  EXIT_CONTEXT,
  WHV_MEMORY_ACCESS_TYPE,
  WHV_RUN_VP_EXIT_REASON as REASON,
} from "../../ffi/windows/winhvplatform.ts";
import type { VmExit } from "../backend/backend.ts";

/** A decoded exit. */
export interface WhpExit {
  /** The neutral exit. */
  readonly exit: VmExit;
  /** `ExitReason`, for diagnostics. */
  readonly reason: number;
  /** `VpContext.Rip`: the address of the instruction that exited. */
  readonly rip: bigint;
  /** `VpContext.InstructionLength` (0-15). */
  readonly instructionLength: number;
  /** For I/O exits, where the guest resumes (`rip + instructionLength`); undefined otherwise. */
  readonly nextRip?: bigint;
  /** For memory exits, the access type (`read`, `write` or `execute`). */
  readonly access?: "read" | "write" | "execute";
}

const UNSUPPORTED_FEATURE: Record<number, string> = { 1: "intercept", 2: "task switch through a TSS" };

/**
 * Decodes an exit context. Never throws: anything snapvm does not handle becomes a `failed` exit whose
 * reason names the exit.
 *
 * @param ctx A view of at least `EXIT_CONTEXT.SIZE` bytes as `WHvRunVirtualProcessor` filled them.
 *
 * @example
 * ```ts
 * import { decodeExit } from "./exit.ts";
 * const ctx = new DataView(new ArrayBuffer(224));
 * ctx.setUint32(0, 8, true); // WHvRunVpExitReasonX64Halt
 * console.log(decodeExit(ctx).exit.kind); // halt
 * ```
 */
export function decodeExit(ctx: DataView): WhpExit {
  if (ctx.byteLength < EXIT_CONTEXT.SIZE) {
    throw new RangeError(`an exit context has ${EXIT_CONTEXT.SIZE} bytes, got ${ctx.byteLength}`);
  }
  const reason = ctx.getUint32(EXIT_CONTEXT.EXIT_REASON, true);
  const rip = ctx.getBigUint64(EXIT_CONTEXT.RIP, true);
  const instructionLength = ctx.getUint8(EXIT_CONTEXT.INSTRUCTION_LENGTH) & 0x0f;
  const base = { reason, rip, instructionLength };
  const failed = (why: string): WhpExit => ({ ...base, exit: { kind: "failed", reason: why } });
  switch (reason) {
    case REASON.X64IoPortAccess: {
      const info = ctx.getUint32(EXIT_CONTEXT.IO_ACCESS_INFO, true);
      const size = (info >>> 1) & 0x7;
      const write = (info & 1) !== 0;
      const string = (info & (1 << 4)) !== 0;
      const rax = ctx.getBigUint64(EXIT_CONTEXT.IO_RAX, true);
      const mask = size >= 4 ? 0xffff_ffffn : (1n << BigInt(size * 8)) - 1n;
      return {
        ...base,
        nextRip: (rip + BigInt(instructionLength)) & 0xffff_ffff_ffff_ffffn,
        exit: {
          kind: "io",
          port: ctx.getUint16(EXIT_CONTEXT.IO_PORT, true),
          size,
          write,
          string,
          value: write && !string ? Number(rax & mask) : 0,
        },
      };
    }
    case REASON.MemoryAccess: {
      const type = ctx.getUint32(EXIT_CONTEXT.MEMORY_ACCESS_INFO, true) & 0x3;
      const access = type === WHV_MEMORY_ACCESS_TYPE.Write
        ? "write"
        : type === WHV_MEMORY_ACCESS_TYPE.Execute
        ? "execute"
        : "read";
      return {
        ...base,
        access,
        exit: {
          kind: "mmio",
          gpa: ctx.getBigUint64(EXIT_CONTEXT.MEMORY_GPA, true),
          write: access === "write",
        },
      };
    }
    case REASON.Canceled:
      return { ...base, exit: { kind: "interrupted" } };
    case REASON.X64Halt:
      return { ...base, exit: { kind: "halt" } };
    case REASON.UnrecoverableException:
      return { ...base, exit: { kind: "shutdown" } };
    case REASON.InvalidVpRegisterValue:
      return failed("WHP refused a register value (WHvRunVpExitReasonInvalidVpRegisterValue)");
    case REASON.UnsupportedFeature: {
      const code = ctx.getUint32(EXIT_CONTEXT.UNSUPPORTED_FEATURE_CODE, true);
      const param = ctx.getBigUint64(EXIT_CONTEXT.UNSUPPORTED_FEATURE_PARAMETER, true);
      return failed(
        `WHP does not support what the guest did: ${UNSUPPORTED_FEATURE[code] ?? `feature ${code}`} ` +
          `(parameter 0x${param.toString(16)})`,
      );
    }
    case REASON.Exception: {
      const vector = ctx.getUint8(EXIT_CONTEXT.EXCEPTION_TYPE);
      return failed(`unexpected exception exit (vector ${vector})`);
    }
    default:
      return failed(`unexpected WHP exit reason 0x${reason.toString(16)}`);
  }
}
