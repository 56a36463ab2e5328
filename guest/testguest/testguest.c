/*
 * The guest the host's tests and benchmarks run. Each function exercises one feature or one way of
 * failing; see guest/README.md for the list.
 */
#include "snapvm.h"

#define PAGE 4096u

static int32_t echo(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  *r = a[0]; /* arguments live in the input buffer, which stays valid until the call returns */
  return SV_OK;
}

static int32_t nothing(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  return SV_OK;
}

static int32_t add(const sv_value *a, uint32_t n, sv_value *r) {
  if (sv_call_host("Add", SV_I32, a, n, r) != SV_OK) return sv_error(SV_ERR_HOST, sv_last_host_error());
  return SV_OK;
}

static int32_t g_static;

static int32_t get_static(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->i32 = g_static;
  return SV_OK;
}

/* Generation() -> u64: the info page's generation (changes on every restore and every clone). */
static int32_t generation(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = sv_generation();
  return SV_OK;
}

/* Random() -> u64: sv_random(), reseeded from host entropy whenever the generation changed. */
static int32_t random_u64(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  r->u64 = sv_random();
  return SV_OK;
}

static int32_t add_to_static(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  g_static += a[0].i32;
  r->i32 = g_static;
  return SV_OK;
}

static int32_t print_output(const sv_value *a, uint32_t n, sv_value *r) {
  /* Passes the argument value through, so strings with NUL bytes print whole. */
  if (sv_call_host("HostPrint", SV_I32, a, n, r) != SV_OK) return sv_error(SV_ERR_HOST, sv_last_host_error());
  return SV_OK;
}

static int32_t spin(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  for (;;) __asm__ volatile(""); /* the asm keeps gcc from treating the loop as dead */
  return SV_OK;
}

static int32_t do_abort(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  sv_abort((uint32_t)a[0].i32, a[1].str.ptr);
}

static int32_t wild_write(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  *(volatile uint8_t *)(uintptr_t)a[0].u64 = 0x5a;
  return SV_OK;
}

static int32_t read_addr(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->u64 = *(volatile uint64_t *)(uintptr_t)a[0].u64;
  return SV_OK;
}

/* 4 KiB per level; using buf after the call prevents tail-call and loop conversion. */
__attribute__((noinline)) static int32_t recurse(int32_t depth) {
  volatile uint8_t buf[4096];
  buf[0] = (uint8_t)depth;
  buf[sizeof buf - 1] = (uint8_t)depth;
  if (depth <= 1) return 1;
  return recurse(depth - 1) + (buf[0] == (uint8_t)depth) - (buf[sizeof buf - 1] != (uint8_t)depth);
}

static int32_t stack_overflow(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  r->i32 = a[0].i32 > 0 ? recurse(a[0].i32) : 0; /* returns the depth reached */
  return SV_OK;
}

static int32_t divide_by_zero(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n;
  volatile int32_t one = 1, zero = 0; /* volatile: gcc would turn 1 / x into a comparison */
  r->i32 = one / zero;
  return SV_OK;
}

static int32_t illegal_instruction(const sv_value *a, uint32_t n, sv_value *r) {
  (void)a, (void)n, (void)r;
  __asm__ volatile("ud2");
  return SV_OK;
}

static int32_t do_malloc(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  uint64_t size = a[0].u64;
  volatile uint8_t *p = malloc(size);
  if (!p) return sv_error(SV_ERR_NO_MEMORY, "out of memory");
  for (uint64_t i = 0; i < size; i += PAGE) p[i] = 1;
  if (size) p[size - 1] = 1;
  r->u64 = (uintptr_t)p;
  return SV_OK;
}

static int32_t do_free(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  free((void *)(uintptr_t)a[0].u64);
  return SV_OK;
}

static int32_t log_message(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  sv_log((uint32_t)a[0].i32, a[1].str.ptr);
  return SV_OK;
}

static int32_t return_large(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  uint32_t len = a[0].u32;
  uint8_t *p = sv_ret_alloc(r, SV_BYTES, len); /* written in place: no heap needed, no copy */
  if (!p) return SV_ERR_OUTPUT_TOO_LARGE;
  for (uint32_t i = 0; i < len; i++) p[i] = (uint8_t)i;
  return SV_OK;
}

/* Dirties exactly n pages per call once the buffer exists (for snapshot/restore benchmarks). */
static uint8_t *g_touch;
static uint32_t g_touch_pages;

static int32_t touch_pages(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n;
  uint32_t pages = a[0].u32;
  if (pages > g_touch_pages) {
    free(g_touch);
    g_touch_pages = 0;
    g_touch = malloc((uint64_t)pages * PAGE);
    if (!g_touch) return sv_error(SV_ERR_NO_MEMORY, "out of memory");
    g_touch_pages = pages;
  }
  volatile uint8_t *p = g_touch;
  for (uint32_t i = 0; i < pages; i++) p[(uint64_t)i * PAGE]++; /* changes the byte, not just writes it */
  r->u32 = pages;
  return SV_OK;
}

static int32_t fail(const sv_value *a, uint32_t n, sv_value *r) {
  (void)n, (void)r;
  return sv_error(a[0].i32, a[1].str.ptr);
}

/* init_arg bit 0: write every page of the heap (through the allocator, which stays intact). */
static void touch_heap(void) {
  size_t n = sv_heap_available();
  if (n == 0) return;
  volatile uint8_t *p = malloc(n);
  if (!p) return;
  for (size_t i = 0; i < n; i += PAGE) p[i] = 1;
  p[n - 1] = 1;
  free((void *)p);
}

#define REG(name, ret, fn, ...)                                                        \
  do {                                                                                 \
    static const sv_type params_[] = {__VA_ARGS__};                                    \
    sv_register(name, ret, sizeof params_ / sizeof params_[0], params_, fn);          \
  } while (0)

void guest_main(void) {
  REG("Echo", SV_STRING, echo, SV_STRING);
  REG("EchoI32", SV_I32, echo, SV_I32);
  REG("EchoU32", SV_U32, echo, SV_U32);
  REG("EchoI64", SV_I64, echo, SV_I64);
  REG("EchoU64", SV_U64, echo, SV_U64);
  REG("EchoF32", SV_F32, echo, SV_F32);
  REG("EchoF64", SV_F64, echo, SV_F64);
  REG("EchoBool", SV_BOOL, echo, SV_BOOL);
  REG("EchoBytes", SV_BYTES, echo, SV_BYTES);
  sv_register("Nothing", SV_VOID, 0, NULL, nothing);
  REG("Add", SV_I32, add, SV_I32, SV_I32);
  sv_register("GetStatic", SV_I32, 0, NULL, get_static);
  sv_register("Generation", SV_U64, 0, NULL, generation);
  sv_register("Random", SV_U64, 0, NULL, random_u64);
  REG("AddToStatic", SV_I32, add_to_static, SV_I32);
  REG("PrintOutput", SV_I32, print_output, SV_STRING);
  sv_register("Spin", SV_VOID, 0, NULL, spin);
  REG("Abort", SV_VOID, do_abort, SV_I32, SV_STRING);
  REG("WildWrite", SV_VOID, wild_write, SV_U64);
  REG("ReadAddr", SV_U64, read_addr, SV_U64);
  REG("StackOverflow", SV_I32, stack_overflow, SV_I32);
  sv_register("DivideByZero", SV_I32, 0, NULL, divide_by_zero);
  sv_register("IllegalInstruction", SV_VOID, 0, NULL, illegal_instruction);
  REG("Malloc", SV_U64, do_malloc, SV_U64);
  REG("Free", SV_VOID, do_free, SV_U64);
  REG("LogMessage", SV_VOID, log_message, SV_I32, SV_STRING);
  REG("ReturnLarge", SV_BYTES, return_large, SV_U32);
  REG("TouchPages", SV_U32, touch_pages, SV_U32);
  REG("Fail", SV_VOID, fail, SV_I32, SV_STRING);
  if (sv_init_arg() & 1) touch_heap();
}
