/*
 * The hostile guest of the fuzz and misbehaviour tests (tests/fuzz/channel_fuzz.ts,
 * tests/misbehaviour_test.ts). It breaks the host/guest protocol on purpose: raw bytes in the output buffer
 * followed by port I/O of any port, width and direction, and the privileged or faulting instructions a
 * CPL3 guest may try. Nothing here is an example of how to write a guest.
 */
#include "snapvm.h"
#include "../runtime/internal.h" /* sv_rt.out / sv_rt.out_size: the raw output buffer */

/* ---- raw channel access ---- */

static uint32_t copy_out(const uint8_t *p, uint32_t len) {
  if (len > sv_rt.out_size) len = (uint32_t)sv_rt.out_size;
  volatile uint8_t *o = sv_rt.out;
  for (uint32_t i = 0; i < len; i++) o[i] = p[i];
  return len;
}

/*
 * One port access. width 1, 2 or 4; in = 1 for `in`. The port goes in DX, so any 16-bit port can be named;
 * the TSS I/O bitmap decides whether it exits to the host or raises #GP.
 */
static uint32_t port_io(uint32_t port, uint32_t width, uint32_t in) {
  uint16_t dx = (uint16_t)port;
  uint32_t eax = 0;
  if (in) {
    if (width == 1) {
      uint8_t v;
      __asm__ volatile("inb %%dx, %0" : "=a"(v) : "d"(dx) : "memory");
      eax = v;
    } else if (width == 2) {
      uint16_t v;
      __asm__ volatile("inw %%dx, %0" : "=a"(v) : "d"(dx) : "memory");
      eax = v;
    } else {
      __asm__ volatile("inl %%dx, %0" : "=a"(eax) : "d"(dx) : "memory");
    }
  } else {
    if (width == 1) __asm__ volatile("outb %%al, %%dx" : : "a"((uint8_t)0), "d"(dx) : "memory");
    else if (width == 2) __asm__ volatile("outw %%ax, %%dx" : : "a"((uint16_t)0), "d"(dx) : "memory");
    else __asm__ volatile("outl %%eax, %%dx" : : "a"(0u), "d"(dx) : "memory");
  }
  return eax;
}

/* RawOut_<type>(bytes payload, u32 port): payload into the output buffer at 0, then a 32-bit out. */
static int32_t raw_out(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  copy_out(a[0].bytes.ptr, a[0].bytes.len);
  port_io(a[1].u32, 4, 0);
  return SV_OK;
}

/*
 * RawSeq(bytes script) -> u32: runs records `u32 port, u32 mode, u32 len, len bytes` in order. Each record's
 * bytes go into the output buffer at 0, then the port access: mode bits 0-2 = width (1, 2, 4; others mean
 * 4), bit 3 = `in`, bit 4 = `rep outsb/insb` with a count of (mode >> 8). Returns the number of records run.
 */
static int32_t raw_seq(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  const uint8_t *p = a[0].bytes.ptr;
  uint32_t left = a[0].bytes.len, count = 0;
  static uint8_t rep_buf[4096];
  while (left >= 12) {
    uint32_t port, mode, len;
    memcpy(&port, p, 4);
    memcpy(&mode, p + 4, 4);
    memcpy(&len, p + 8, 4);
    p += 12, left -= 12;
    if (len > left) len = left;
    copy_out(p, len);
    p += len, left -= len;
    uint32_t width = mode & 7;
    if (width != 1 && width != 2) width = 4;
    if (mode & 16) {
      uint64_t cnt = (mode >> 8) & 0xfff;
      void *buf = rep_buf;
      if (mode & 8) {
        __asm__ volatile("rep insb" : "+D"(buf), "+c"(cnt) : "d"((uint16_t)port) : "memory");
      } else {
        const void *src = rep_buf;
        __asm__ volatile("rep outsb" : "+S"(src), "+c"(cnt) : "d"((uint16_t)port) : "memory");
      }
    } else {
      port_io(port, width, (mode & 8) != 0);
    }
    count++;
  }
  r->u32 = count;
  return SV_OK;
}

/* OutWidth(u32 port, u32 width): one `out` of that width (1, 2, 4) with an empty output buffer. */
static int32_t out_width(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  port_io(a[0].u32, a[1].u32, 0);
  return SV_OK;
}

/* InWidth(u32 port, u32 width) -> u32: one `in` of that width. */
static int32_t in_width(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->u32 = port_io(a[0].u32, a[1].u32, 1);
  return SV_OK;
}

/* OutImm(u32 which): `out` with an immediate port: 0 = outb $0xE0, 1 = outw $0xE0, 2 = outl $0xE4. */
static int32_t out_imm(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  switch (a[0].u32) {
  case 0: __asm__ volatile("outb %%al, $0xE0" : : "a"((uint8_t)0) : "memory"); break;
  case 1: __asm__ volatile("outw %%ax, $0xE0" : : "a"((uint16_t)0) : "memory"); break;
  default: __asm__ volatile("outl %%eax, $0xE4" : : "a"(0u) : "memory"); break;
  }
  return SV_OK;
}

/* ---- privileged and faulting instructions (all must fault at CPL3) ---- */

#define INSN(cname, ...)                                              \
  static int32_t cname(const sv_value *a, uint32_t n, sv_value *r) {  \
    (void)a, (void)n, (void)r;                                         \
    __asm__ volatile(__VA_ARGS__);                                     \
    return SV_OK;                                                      \
  }

INSN(do_hlt, "hlt" : : : "memory")
INSN(do_cli, "cli" : : : "memory")
INSN(do_sti, "sti" : : : "memory")
INSN(do_mov_cr3, "mov %0, %%cr3" : : "r"((uint64_t)0x5000) : "memory")
INSN(do_mov_cr0, "mov %0, %%cr0" : : "r"((uint64_t)0x33) : "memory")
INSN(do_read_cr3, "mov %%cr3, %%rax" : : : "rax", "memory")
INSN(do_wrmsr, "wrmsr" : : "c"(0xc0000080u), "a"(0u), "d"(0u) : "memory")
INSN(do_rdmsr, "rdmsr" : : "c"(0xc0000080u) : "rax", "rdx", "memory")
INSN(do_int3, "int3" : : : "memory")
INSN(do_int1, ".byte 0xf1" : : : "memory") /* icebp */
INSN(do_int80, "int $0x80" : : : "memory")
INSN(do_int_gp, "int $13" : : : "memory")
INSN(do_ud2, "ud2" : : : "memory")
INSN(do_syscall, "syscall" : : : "rcx", "r11", "memory")
INSN(do_sysenter, "sysenter" : : : "memory")
INSN(do_invd, "invd" : : : "memory")
INSN(do_invlpg, "invlpg (%0)" : : "r"((uint64_t)0x200000) : "memory")
INSN(do_ltr, "ltr %w0" : : "r"(0x38) : "memory")
INSN(do_rdpmc, "rdpmc" : : "c"(0) : "rax", "rdx", "memory")
INSN(do_mov_ss, "mov %w0, %%ss" : : "r"(0x10) : "memory")
/* vmcall at CPL3: KVM refuses it (RAX = -KVM_EPERM) and the guest goes on. */
static int32_t do_vmcall(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t rax = 0;
  __asm__ volatile("vmcall" : "+a"(rax) : : "memory");
  r->u64 = rax;
  return SV_OK;
}

static int32_t do_lgdt(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  static struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = {0xffff, 0};
  __asm__ volatile("lgdt %0" : : "m"(d) : "memory");
  return SV_OK;
}

static int32_t do_lidt(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  static struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = {0, 0};
  __asm__ volatile("lidt %0" : : "m"(d) : "memory");
  return SV_OK;
}

/*
 * SyscallRsp(u64 rsp): `syscall` with RSP moved first. EFER.SCE is set, so syscall enters CPL0 at LSTAR
 * without switching stacks: whatever it faults on next is delivered on this stack.
 */
static int32_t do_syscall_rsp(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("mov %0, %%rsp\n\tsyscall\n\tud2" : : "r"(a[0].u64) : "rcx", "r11", "memory");
  return SV_OK;
}

/* Far return into the kernel code segment: privilege raise, #GP. */
static int32_t do_lret_kernel(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  __asm__ volatile("pushq $0x08\n\tlea 1f(%%rip), %%rax\n\tpushq %%rax\n\tlretq\n1:" : : : "rax", "memory");
  return SV_OK;
}

/* Unaligned access with RFLAGS.AC set: CR0.AM is on, so #AC at CPL3. */
static int32_t do_alignment_check(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  static uint8_t buf[16];
  __asm__ volatile("pushf\n\torq $0x40000, (%%rsp)\n\tpopf\n\tmovl (%0), %%eax\n\t"
                   "pushf\n\tandq $~0x40000, (%%rsp)\n\tpopf"
                   :
                   : "r"(buf + 1)
                   : "rax", "memory", "cc");
  return SV_OK;
}

/* Trap flag: #DB after the next instruction. */
static int32_t do_single_step(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  __asm__ volatile("pushf\n\torq $0x100, (%%rsp)\n\tpopf\n\tnop\n\tnop" : : : "memory", "cc");
  return SV_OK;
}

/* Unmasked SSE divide-by-zero: #XM (CR4.OSXMMEXCPT is set). */
static int32_t do_simd_exception(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  uint32_t mxcsr = 0x1f80 & ~0x200u; /* unmask ZE */
  volatile float one = 1.0f, zero = 0.0f;
  float out;
  __asm__ volatile("ldmxcsr %1\n\tmovss %2, %%xmm0\n\tdivss %3, %%xmm0\n\tmovss %%xmm0, %0"
                   : "=m"(out)
                   : "m"(mxcsr), "m"(one), "m"(zero)
                   : "xmm0", "memory");
  return SV_OK;
}

/* An AVX instruction: #UD, CR4.OSXSAVE is off. */
INSN(do_avx, ".byte 0xc5, 0xfc, 0x57, 0xc0" : : : "memory") /* vxorps %ymm0, %ymm0, %ymm0 */

/* ---- memory ---- */

static int32_t code_addr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = (uint64_t)(uintptr_t)&code_addr;
  return SV_OK;
}

static const uint64_t g_rodata[2] = {0x1122334455667788ull, 1};

static int32_t rodata_addr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = (uint64_t)(uintptr_t)&g_rodata[0];
  return SV_OK;
}

static int32_t heap_addr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = sv_rt.heap_base;
  return SV_OK;
}

/* Poke(u64 addr, u32 byte): one byte write. */
static int32_t poke(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  *(volatile uint8_t *)(uintptr_t)a[0].u64 = (uint8_t)a[1].u32;
  return SV_OK;
}

/* Peek(u64 addr) -> u32: one byte read. */
static int32_t peek(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->u32 = *(volatile uint8_t *)(uintptr_t)a[0].u64;
  return SV_OK;
}

/* Jump(u64 addr): call that address (execute from data, heap, supervisor or unmapped memory). */
static int32_t jump(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  ((void (*)(void))(uintptr_t)a[0].u64)();
  return SV_OK;
}

/* SetRspAndPush(u64 addr): moves RSP there and pushes: a fault with a broken user stack. */
static int32_t set_rsp_and_push(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("mov %0, %%rsp\n\tpushq $0\n\tud2" : : "r"(a[0].u64) : "memory");
  return SV_OK;
}

/* Counter(): increments and returns a global, so tests can see whether state survived a restore. */
static int32_t g_counter;
static int32_t counter(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->i32 = ++g_counter;
  return SV_OK;
}

static int32_t echo_bytes(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  *r = a[0];
  return SV_OK;
}

#define REG(name, ret, fn, ...)                                               \
  do {                                                                        \
    static const sv_type params_[] = {__VA_ARGS__};                           \
    sv_register(name, ret, sizeof params_ / sizeof params_[0], params_, fn); \
  } while (0)
#define REG0(name, ret, fn) sv_register(name, ret, 0, NULL, fn)

void guest_main(void) {
  static const char *const raw_names[] = {"RawOut_void", "RawOut_i32",  "RawOut_u32",    "RawOut_i64",
                                          "RawOut_u64",  "RawOut_f32",  "RawOut_f64",    "RawOut_bool",
                                          "RawOut_string", "RawOut_bytes"};
  static const sv_type raw_params[] = {SV_BYTES, SV_U32};
  for (uint32_t t = SV_VOID; t <= SV_BYTES; t++) sv_register(raw_names[t], (sv_type)t, 2, raw_params, raw_out);
  REG("RawSeq", SV_U32, raw_seq, SV_BYTES);
  REG("OutWidth", SV_VOID, out_width, SV_U32, SV_U32);
  REG("InWidth", SV_U32, in_width, SV_U32, SV_U32);
  REG("OutImm", SV_VOID, out_imm, SV_U32);
  REG0("Hlt", SV_VOID, do_hlt);
  REG0("Cli", SV_VOID, do_cli);
  REG0("Sti", SV_VOID, do_sti);
  REG0("MovCr3", SV_VOID, do_mov_cr3);
  REG0("MovCr0", SV_VOID, do_mov_cr0);
  REG0("ReadCr3", SV_VOID, do_read_cr3);
  REG0("Lgdt", SV_VOID, do_lgdt);
  REG0("Lidt", SV_VOID, do_lidt);
  REG0("Wrmsr", SV_VOID, do_wrmsr);
  REG0("Rdmsr", SV_VOID, do_rdmsr);
  REG0("Int3", SV_VOID, do_int3);
  REG0("Int1", SV_VOID, do_int1);
  REG0("Int80", SV_VOID, do_int80);
  REG0("IntGp", SV_VOID, do_int_gp);
  REG0("Ud2", SV_VOID, do_ud2);
  REG0("Syscall", SV_VOID, do_syscall);
  REG0("Sysenter", SV_VOID, do_sysenter);
  REG0("Invd", SV_VOID, do_invd);
  REG0("Invlpg", SV_VOID, do_invlpg);
  REG0("Ltr", SV_VOID, do_ltr);
  REG0("Rdpmc", SV_VOID, do_rdpmc);
  REG0("MovSs", SV_VOID, do_mov_ss);
  REG0("Vmcall", SV_U64, do_vmcall);
  REG("SyscallRsp", SV_VOID, do_syscall_rsp, SV_U64);
  REG0("LretKernel", SV_VOID, do_lret_kernel);
  REG0("AlignmentCheck", SV_VOID, do_alignment_check);
  REG0("SingleStep", SV_VOID, do_single_step);
  REG0("SimdException", SV_VOID, do_simd_exception);
  REG0("Avx", SV_VOID, do_avx);
  REG0("CodeAddr", SV_U64, code_addr);
  REG0("RodataAddr", SV_U64, rodata_addr);
  REG0("HeapAddr", SV_U64, heap_addr);
  REG("Poke", SV_VOID, poke, SV_U64, SV_U32);
  REG("Peek", SV_U32, peek, SV_U64);
  REG("Jump", SV_VOID, jump, SV_U64);
  REG("SetRspAndPush", SV_VOID, set_rsp_and_push, SV_U64);
  REG0("Counter", SV_I32, counter);
  REG("EchoBytes", SV_BYTES, echo_bytes, SV_BYTES);
}
