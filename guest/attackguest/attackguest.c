/*
 * The attacker's guest of the trust-boundary tests (tests/vm/trust_boundary_test.ts and friends). Each
 * function either changes a piece of CPU state a CPL3 guest can reach, or reads it back, so a test can check
 * that nothing one tenant leaves behind is visible to the next sandbox on a pooled VM, after a restore, or
 * in a sandbox made from a snapshot. Nothing here is an example of how to write a guest.
 */
#include "snapvm.h"
#include "../runtime/internal.h" /* sv_rt.in / sv_rt.out: the raw I/O buffers */

/* ---- segment selectors ---- */

/* LoadSegs(u64 packed): DS | ES << 16 | FS << 32 | GS << 48 (selectors a CPL3 guest may load). */
static int32_t load_segs(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint64_t v = a[0].u64;
  uint16_t ds = (uint16_t)v, es = (uint16_t)(v >> 16), fs = (uint16_t)(v >> 32), gs = (uint16_t)(v >> 48);
  __asm__ volatile("mov %w0, %%ds\n\tmov %w1, %%es\n\tmov %w2, %%fs\n\tmov %w3, %%gs"
                   :
                   : "r"(ds), "r"(es), "r"(fs), "r"(gs)
                   : "memory");
  return SV_OK;
}

/* ReadSegs() -> u64: DS | ES << 16 | FS << 32 | GS << 48 as the guest sees them now. */
static int32_t read_segs(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint16_t ds, es, fs, gs;
  __asm__ volatile("mov %%ds, %w0\n\tmov %%es, %w1\n\tmov %%fs, %w2\n\tmov %%gs, %w3"
                   : "=r"(ds), "=r"(es), "=r"(fs), "=r"(gs));
  r->u64 = (uint64_t)ds | (uint64_t)es << 16 | (uint64_t)fs << 32 | (uint64_t)gs << 48;
  return SV_OK;
}

/* WrBases(u64 fs, u64 gs): wrfsbase/wrgsbase (#UD unless the CPU lets CPL3 write them). */
static int32_t wr_bases(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("wrfsbase %0\n\twrgsbase %1" : : "r"(a[0].u64), "r"(a[1].u64) : "memory");
  return SV_OK;
}

/* RdBases() -> u64: fs base xor (gs base rotated by 32), read with rdfsbase/rdgsbase. */
static int32_t rd_bases(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t fs, gs;
  __asm__ volatile("rdfsbase %0\n\trdgsbase %1" : "=r"(fs), "=r"(gs));
  r->u64 = fs ^ (gs << 32 | gs >> 32);
  return SV_OK;
}

/* FsRead() -> u64: an 8-byte read at %fs:0 (the FS base seen through a segment override). */
static int32_t fs_read(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v;
  __asm__ volatile("mov %%fs:0, %0" : "=r"(v));
  r->u64 = v;
  return SV_OK;
}

/* WrPkru(u32 v): wrpkru (#UD unless protection keys are enabled for CPL3). */
static int32_t wr_pkru(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("wrpkru" : : "a"(a[0].u32), "c"(0), "d"(0) : "memory");
  return SV_OK;
}

/* RdPkru() -> u32. */
static int32_t rd_pkru(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint32_t v;
  __asm__ volatile("rdpkru" : "=a"(v) : "c"(0) : "rdx");
  r->u32 = v;
  return SV_OK;
}

/* ---- x87 / SSE / AVX ---- */

/* SetVector(u64 x): writes x into xmm0..xmm15 and the x87 control word, and unmasks SSE exceptions. */
static int32_t set_vector(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint64_t x[2] = {a[0].u64, ~a[0].u64};
  uint16_t fcw = 0x27f; /* double precision instead of extended */
  uint32_t mxcsr = 0x1f80 & ~0x0200u & ~0x6000u; /* ZE unmasked, round toward -inf */
  mxcsr |= 0x2000;
  __asm__ volatile("movdqu %0, %%xmm0\n\tmovdqa %%xmm0, %%xmm1\n\tmovdqa %%xmm0, %%xmm7\n\t"
                   "movdqa %%xmm0, %%xmm8\n\tmovdqa %%xmm0, %%xmm15\n\tfldcw %1\n\tldmxcsr %2"
                   :
                   : "m"(x), "m"(fcw), "m"(mxcsr)
                   : "xmm0", "xmm1", "xmm7", "xmm8", "xmm15", "memory");
  return SV_OK;
}

/* ReadVector() -> u64: low half of xmm15 (never touched by compiled code here), xor FCW, xor MXCSR. */
static int32_t read_vector(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t x[2];
  uint16_t fcw;
  uint32_t mxcsr;
  __asm__ volatile("movdqu %%xmm15, %0\n\tfnstcw %1\n\tstmxcsr %2" : "=m"(x), "=m"(fcw), "=m"(mxcsr));
  r->u64 = x[0] ^ ((uint64_t)fcw << 32) ^ ((uint64_t)mxcsr << 48);
  return SV_OK;
}

/* SetWide(u64 x): x into the upper half of ymm14 (AVX) — #UD where the guest cannot use AVX. */
static int32_t set_ymm(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("vmovq %0, %%xmm13\n\tvinserti128 $1, %%xmm13, %%ymm14, %%ymm14" : : "r"(a[0].u64) : "xmm13", "xmm14");
  return SV_OK;
}

/* ReadWide() -> u64: the low quadword of ymm14's upper half. */
static int32_t read_ymm(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v;
  __asm__ volatile("vextracti128 $1, %%ymm14, %%xmm13\n\tvmovq %%xmm13, %0" : "=r"(v) : : "xmm13");
  r->u64 = v;
  return SV_OK;
}

/* SetZmm(u64 x): x into zmm31 and opmask k1 (AVX-512) — #UD where the guest cannot use AVX-512. */
static int32_t set_zmm(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  __asm__ volatile("vpbroadcastq %0, %%zmm31\n\tkmovq %0, %%k1" : : "r"(a[0].u64) : "memory");
  return SV_OK;
}

/* ReadZmm() -> u64: the low quadword of zmm31 xor opmask k1. */
static int32_t read_zmm(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v, k;
  __asm__ volatile("vmovq %%xmm31, %0\n\tkmovq %%k1, %1" : "=r"(v), "=r"(k));
  r->u64 = v ^ k;
  return SV_OK;
}

/* ---- flags and identity ---- */

/* SetFlags(u64 bits): ORs bits into RFLAGS with popf (AC, DF and the like; TF is refused). */
static int32_t set_flags(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uint64_t bits = a[0].u64 & ~(uint64_t)0x100;
  __asm__ volatile("pushf\n\torq %0, (%%rsp)\n\tpopf" : : "r"(bits) : "memory", "cc");
  return SV_OK;
}

/* ReadFlags() -> u64: RFLAGS at entry to this function. */
static int32_t read_flags(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t f;
  __asm__ volatile("pushf\n\tpop %0" : "=r"(f));
  r->u64 = f;
  return SV_OK;
}

/* Rdtscp() -> u64: the TSC_AUX value rdtscp reports (the low 32 bits of RCX). */
static int32_t do_rdtscp(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint32_t lo, hi, aux;
  __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
  r->u64 = aux;
  return SV_OK;
}

/* Rdpid() -> u64: the TSC_AUX value rdpid reports. */
static int32_t do_rdpid(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint64_t v;
  __asm__ volatile(".byte 0xf3, 0x0f, 0xc7, 0xf8" : "=a"(v)); /* rdpid %rax */
  r->u64 = v;
  return SV_OK;
}

/* ---- time ---- */

/* Spin(): never returns (for time limits). */
static int32_t spin(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  for (;;) __asm__ volatile("pause");
  return SV_OK;
}

/* CallHost(string name) -> i32: calls a host function with no arguments that returns i32. */
static int32_t call_host(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  sv_value result;
  int32_t rc = sv_call_host(a[0].str.ptr, SV_I32, NULL, 0, &result);
  if (rc != SV_OK) return sv_error(rc, sv_last_host_error());
  r->i32 = result.i32;
  return SV_OK;
}

/* CallHostBytes(string name) -> bytes: calls a host function with no arguments that returns bytes. */
static int32_t call_host_bytes(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  sv_value result;
  int32_t rc = sv_call_host(a[0].str.ptr, SV_BYTES, NULL, 0, &result);
  if (rc != SV_OK) return sv_error(rc, sv_last_host_error());
  uint8_t *copy = sv_ret_alloc(r, SV_BYTES, result.bytes.len);
  if (copy == NULL) return sv_error(SV_ERR_NO_MEMORY, "no memory for the result");
  memcpy(copy, result.bytes.ptr, result.bytes.len);
  return SV_OK;
}

/* CallHostLen(string name) -> u32: calls a host function returning bytes, returns only its length (so the
 * host's answer stays in the output buffer, beyond what the result overwrites). */
static int32_t call_host_len(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  sv_value result;
  int32_t rc = sv_call_host(a[0].str.ptr, SV_BYTES, NULL, 0, &result);
  if (rc != SV_OK) return sv_error(rc, sv_last_host_error());
  r->u32 = result.bytes.len;
  return SV_OK;
}

/* Counter(): a global counter, to see which memory state a sandbox has. */
static int32_t g_counter;
static int32_t counter(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->i32 = ++g_counter;
  return SV_OK;
}

/* Int3(): a breakpoint trap. */
static int32_t do_int3(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  __asm__ volatile("int3" : : : "memory");
  return SV_OK;
}

/* Peek(u64 addr) -> u64: an 8-byte read anywhere (faults where the guest has no access). */
static int32_t peek(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->u64 = *(volatile uint64_t *)(uintptr_t)a[0].u64;
  return SV_OK;
}

/* Poke(u64 addr, u64 value): an 8-byte write anywhere. */
static int32_t poke(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  *(volatile uint64_t *)(uintptr_t)a[0].u64 = a[1].u64;
  return SV_OK;
}

/* Addr() -> u64: the address of the global counter (a writable data page of the image). */
static int32_t addr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = (uint64_t)(uintptr_t)&g_counter;
  return SV_OK;
}

/* FillStack(u64 x) -> u64: fills 8 KiB of its own stack frame with x; returns the frame's address. */
static int32_t fill_stack(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  volatile uint64_t frame[1024];
  for (int i = 0; i < 1024; i++) frame[i] = a[0].u64;
  r->u64 = (uint64_t)(uintptr_t)&frame[512];
  return SV_OK;
}

/* Alloc(u64 size) -> u64: malloc (heap pages for tests to write). */
static int32_t alloc(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->u64 = (uint64_t)(uintptr_t)malloc((size_t)a[0].u64);
  return SV_OK;
}

/* FillPages(u64 addr, u32 pages, u64 value): writes value into the first quadword of each page. */
static int32_t fill_pages(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a[0].u64;
  for (uint32_t i = 0; i < a[1].u32; i++) p[(uint64_t)i * 512] = a[2].u64;
  return SV_OK;
}

/* SumPages(u64 addr, u32 pages) -> u64: the sum of the first quadword of each page. */
static int32_t sum_pages(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  const volatile uint64_t *p = (const volatile uint64_t *)(uintptr_t)a[0].u64;
  uint64_t sum = 0;
  for (uint32_t i = 0; i < a[1].u32; i++) sum += p[(uint64_t)i * 512];
  r->u64 = sum;
  return SV_OK;
}

/* Echo(string) -> string. */
static int32_t echo(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  *r = a[0];
  return SV_OK;
}

/* BufferByte(u32 which, u32 offset) -> u32: a byte of the input (0) or output (1) buffer as it is now. */
static int32_t buffer_byte(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  const uint8_t *buf = a[0].u32 == 0 ? sv_rt.in : sv_rt.out;
  uint64_t size = a[0].u32 == 0 ? sv_rt.in_size : sv_rt.out_size;
  r->u32 = a[1].u32 < size ? ((const volatile uint8_t *)buf)[a[1].u32] : 0xffffffffu;
  return SV_OK;
}

/* Escalated(): a function a forged IDT gate would send the CPU to at CPL0; returns CS. */
static int32_t escalated(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  uint16_t cs;
  __asm__ volatile("mov %%cs, %w0" : "=r"(cs));
  r->u64 = cs;
  return SV_OK;
}

/* ---- the mailbox (hot sandboxes) ---- */

/*
 * ForgeMailbox(string s, u32 delta, u32 kind, u32 input_size): posts a message of its own in the mailbox
 * (the 128 bytes below the input buffer, docs/ABI.md "Hot mode"): kind `kind`, guest_seq advanced by
 * `delta`; for kind 1 (a result) it first writes a valid void result into the output buffer (which follows
 * the input buffer, `input_size` bytes long). Then it spins forever without reading the mailbox again or
 * parking, as a hostile hot guest could. `s` only locates the input buffer (requests are smaller than a
 * page, and the buffer is page aligned).
 */
static int32_t forge_mailbox(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  uintptr_t in = (uintptr_t)a[0].str.ptr & ~(uintptr_t)0xfff;
  volatile uint32_t *guest_seq = (volatile uint32_t *)(in - 128 + 64), *kind = guest_seq + 1;
  if (a[2].u32 == 1) {
    volatile uint8_t *out = (volatile uint8_t *)(in + a[3].u32);
    out[0] = out[1] = out[2] = out[3] = 0; /* status ok */
    out[4] = 0;                            /* void */
  }
  *kind = a[2].u32;
  __atomic_store_n(guest_seq, *guest_seq + a[1].u32, __ATOMIC_RELEASE);
  for (;;) __asm__ volatile("pause");
  return SV_OK;
}

#define REG(name, ret, fn, ...)                                               \
  do {                                                                        \
    static const sv_type params_[] = {__VA_ARGS__};                           \
    sv_register(name, ret, sizeof params_ / sizeof params_[0], params_, fn); \
  } while (0)
#define REG0(name, ret, fn) sv_register(name, ret, 0, NULL, fn)

void guest_main(void) {
  REG("LoadSegs", SV_VOID, load_segs, SV_U64);
  REG0("ReadSegs", SV_U64, read_segs);
  REG("WrBases", SV_VOID, wr_bases, SV_U64, SV_U64);
  REG0("RdBases", SV_U64, rd_bases);
  REG0("FsRead", SV_U64, fs_read);
  REG("WrPkru", SV_VOID, wr_pkru, SV_U32);
  REG0("RdPkru", SV_U32, rd_pkru);
  REG("SetVector", SV_VOID, set_vector, SV_U64);
  REG0("ReadVector", SV_U64, read_vector);
  REG("SetYmm", SV_VOID, set_ymm, SV_U64);
  REG0("ReadYmm", SV_U64, read_ymm);
  REG("SetZmm", SV_VOID, set_zmm, SV_U64);
  REG0("ReadZmm", SV_U64, read_zmm);
  REG("SetFlags", SV_VOID, set_flags, SV_U64);
  REG0("ReadFlags", SV_U64, read_flags);
  REG0("Rdtscp", SV_U64, do_rdtscp);
  REG0("Rdpid", SV_U64, do_rdpid);
  REG0("Spin", SV_VOID, spin);
  REG("CallHost", SV_I32, call_host, SV_STRING);
  REG("CallHostBytes", SV_BYTES, call_host_bytes, SV_STRING);
  REG("CallHostLen", SV_U32, call_host_len, SV_STRING);
  REG0("Counter", SV_I32, counter);
  REG0("Int3", SV_VOID, do_int3);
  REG("Peek", SV_U64, peek, SV_U64);
  REG("Poke", SV_VOID, poke, SV_U64, SV_U64);
  REG0("Addr", SV_U64, addr);
  REG0("Escalated", SV_U64, escalated);
  REG("FillStack", SV_U64, fill_stack, SV_U64);
  REG("Alloc", SV_U64, alloc, SV_U64);
  REG("FillPages", SV_VOID, fill_pages, SV_U64, SV_U32, SV_U64);
  REG("SumPages", SV_U64, sum_pages, SV_U64, SV_U32);
  REG("Echo", SV_STRING, echo, SV_STRING);
  REG("BufferByte", SV_U32, buffer_byte, SV_U32, SV_U32);
  REG("ForgeMailbox", SV_VOID, forge_mailbox, SV_STRING, SV_U32, SV_U32, SV_U32);
}
