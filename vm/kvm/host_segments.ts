/**
 * Resets the calling thread's data segment selectors (DS, ES, FS, GS) to the null selector.
 *
 * Why: on PVM hosts (KVM without hardware virtualization, where guest CPL3 code runs natively in the host
 * thread's context) the data segment selectors a guest loads are the host thread's own registers. KVM_SET_SREGS
 * does not reach them, so a selector one guest loads stays in the thread, and the next guest run on that
 * thread, of any sandbox, reads it; a thread started later inherits it. Measured here: a guest loads 0x2b
 * into DS, a brand-new VM's guest on the same thread reads 0x2b. On VMX/SVM hosts the guest's selectors live in
 * the VMCS/VMCB and this reset changes nothing for guests. The backend calls it before a thread runs a VM
 * other than the one it ran last, and before every entry (init, restore, a loaded snapshot).
 *
 * DS and ES cannot be set by any system call, so a 36-byte function is mapped once per thread as machine code
 * (`ffi/executable.ts`: never writable and executable at once): it clears DS and ES when either is non-null
 * and returns FS | GS << 16. FS and GS are reset only when non-null, with `arch_prctl(ARCH_SET_FS/GS)`, which loads
 * the null selector and then writes back the base the thread already had (its TLS for FS).
 *
 * @module
 */
import { ExecutableMemoryError, openHost, PAGE_SIZE } from "../../ffi/executable.ts";
import { check } from "../../ffi/linux/errno.ts";
import { libc } from "../../ffi/linux/libc.ts";

/**
 * x86-64 machine code (assembled from: `xor %eax,%eax; mov %ds,%ax; xor %ecx,%ecx; mov %es,%cx; or %ecx,%eax;
 * jz 1f; xor %edx,%edx; mov %edx,%ds; mov %edx,%es; 1: xor %eax,%eax; mov %fs,%ax; xor %ecx,%ecx; mov %gs,%cx;
 * shl $16,%ecx; or %ecx,%eax; ret`).
 */
const CODE = new Uint8Array([
  0x31,
  0xc0,
  0x66,
  0x8c,
  0xd8,
  0x31,
  0xc9,
  0x66,
  0x8c,
  0xc1,
  0x09,
  0xc8,
  0x74,
  0x06,
  0x31,
  0xd2,
  0x8e,
  0xda,
  0x8e,
  0xc2,
  0x31,
  0xc0,
  0x66,
  0x8c,
  0xe0,
  0x31,
  0xc9,
  0x66,
  0x8c,
  0xe9,
  0xc1,
  0xe1,
  0x10,
  0x09,
  0xc8,
  0xc3,
]);

const SIGNATURE = { parameters: [], result: "u32" } as const;
const SYS_ARCH_PRCTL = 158n;
const ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002, ARCH_GET_FS = 0x1003, ARCH_GET_GS = 0x1004;

let reset: (() => number) | null | undefined;

function generate(): (() => number) | null {
  const host = openHost();
  if (host === null) return null;
  try {
    // Mapped once per thread for the life of the process (4 KiB); W^X throughout (see ffi/executable.ts).
    const code = host.mapExecutable(CODE, PAGE_SIZE, PAGE_SIZE);
    const fn = new Deno.UnsafeFnPointer(code.base as Deno.PointerObject<typeof SIGNATURE>, SIGNATURE);
    return () => fn.call();
  } catch (e) {
    // Where executable memory is forbidden (some hardened kernels), selectors are not reset:
    // docs/SECURITY.md names this residual risk.
    if (e instanceof ExecutableMemoryError) return null;
    throw e;
  }
}

function resetBase(get: number, set: number): void {
  const base = new BigUint64Array(1);
  check(
    "arch_prctl(ARCH_GET)",
    Number(libc().syscall_ptr(SYS_ARCH_PRCTL, BigInt(get), new Uint8Array(base.buffer))),
  );
  check("arch_prctl(ARCH_SET)", Number(libc().syscall3(SYS_ARCH_PRCTL, BigInt(set), base[0])));
}

/**
 * Clears this thread's DS/ES/FS/GS selectors (keeping the FS and GS bases). Returns false where the
 * platform forbids the generated code.
 *
 * @example
 * ```ts
 * import { resetThreadSegments } from "./host_segments.ts";
 * console.log(resetThreadSegments());
 * ```
 */
export function resetThreadSegments(): boolean {
  if (reset === undefined) reset = generate();
  if (reset === null) return false;
  const fsgs = reset();
  if ((fsgs & 0xffff) !== 0) resetBase(ARCH_GET_FS, ARCH_SET_FS);
  if (fsgs >>> 16 !== 0) resetBase(ARCH_GET_GS, ARCH_SET_GS);
  return true;
}
