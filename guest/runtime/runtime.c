/*
 * The guest side of docs/ABI.md: boot, the request loop, value encoding, host calls, logging, abort.
 *
 * Everything read from the input buffer, and every host answer, is untrusted: all reads are checked
 * against the buffer sizes from the boot record, and a malformed message becomes an error result.
 */
#include "internal.h"

#define BOOT_MAGIC 0x49425653u /* "SVBI" */
#define BOOT_RECORD_SIZE 72
#define REQ_CALL 1
#define REQ_LIST 2
#define STATUS_OK 0
#define STATUS_ERROR 1
#define STATUS_NOT_FOUND 2
#define NAME_POOL_SIZE 8192

struct sv_boot sv_rt;

/* The registry is written only during init, so it is part of the snapshot and read-only afterwards. */
struct fn_entry {
  const char *name;
  sv_guest_fn fn;
  uint8_t name_len, ret, nparams;
  uint8_t params[SV_MAX_PARAMS];
};
static struct fn_entry g_fns[SV_MAX_FUNCTIONS];
static uint32_t g_nfns;
static char g_names[NAME_POOL_SIZE];
static uint32_t g_names_used;
static bool g_init_done;

extern char sv_dispatch[];   /* start.S */
extern char __image_end[];   /* link.ld */

/* Unaligned little-endian access; __builtin_memcpy compiles to a plain load/store. */
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
static inline void st32(uint8_t *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
static inline void st64(uint8_t *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }

static bool put_function_list(uint64_t pos);

static const char *type_name(uint32_t t) {
  static const char *const names[] = {"void", "i32", "u32", "i64", "u64", "f32", "f64", "bool", "string", "bytes"};
  return t <= SV_BYTES ? names[t] : "invalid type";
}

/* ---- bounds-checked reader; invariant pos <= size ---- */
struct rd {
  uint8_t *p;
  uint64_t size, pos;
};

static bool rd_u32(struct rd *r, uint32_t *v) {
  if (r->size - r->pos < 4) return false;
  *v = ld32(r->p + r->pos);
  r->pos += 4;
  return true;
}

/* Reads tag + payload. Returns NULL or what was wrong. String/bytes point into the buffer. */
static const char *rd_value(struct rd *r, sv_value *v) {
  if (r->size - r->pos < 1) return "truncated value";
  uint8_t tag = r->p[r->pos++];
  uint64_t avail = r->size - r->pos;
  const uint8_t *q = r->p + r->pos;
  *v = (sv_value){.type = (sv_type)tag};
  switch (tag) {
  case SV_VOID: return NULL;
  case SV_I32: case SV_U32: case SV_F32:
    if (avail < 4) return "truncated value";
    v->u32 = ld32(q);
    r->pos += 4;
    return NULL;
  case SV_I64: case SV_U64: case SV_F64:
    if (avail < 8) return "truncated value";
    v->u64 = ld64(q);
    r->pos += 8;
    return NULL;
  case SV_BOOL:
    if (avail < 1) return "truncated value";
    if (q[0] > 1) return "bool value is not 0 or 1";
    v->b = q[0];
    r->pos += 1;
    return NULL;
  case SV_STRING: case SV_BYTES: {
    if (avail < 4) return "truncated value";
    uint32_t len = ld32(q);
    if (avail - 4 < len) return "string/bytes length exceeds the buffer";
    v->bytes.ptr = q + 4;
    v->bytes.len = len;
    r->pos += 4 + (uint64_t)len;
    return NULL;
  }
  default: return "unknown type tag";
  }
}

/*
 * NUL-terminates a string that was read from buf (size bytes) and returns its new start. The byte after
 * the string is free once everything has been decoded (it is the next value's tag); if the string ends
 * the buffer, it is moved back one byte over its own (already decoded) length prefix instead.
 */
static const char *terminate(uint8_t *buf, uint64_t size, const char *s, uint32_t len) {
  uint8_t *p = (uint8_t *)s;
  if ((uint64_t)(p - buf) + len < size) {
    p[len] = 0;
    return s;
  }
  memmove(p - 1, p, len);
  p[len - 1] = 0;
  return (const char *)(p - 1);
}

/* Payload bytes after the tag; 0 for an invalid value. */
static uint64_t payload_size(const sv_value *v, bool *ok) {
  *ok = true;
  switch (v->type) {
  case SV_VOID: return 0;
  case SV_I32: case SV_U32: case SV_F32: return 4;
  case SV_I64: case SV_U64: case SV_F64: return 8;
  case SV_BOOL: return 1;
  case SV_STRING: case SV_BYTES:
    if (v->bytes.ptr == NULL && v->bytes.len != 0) *ok = false;
    return 4 + (uint64_t)v->bytes.len;
  default: *ok = false; return 0;
  }
}

/*
 * Writes tag + payload at b (space already checked). The payload goes first, with memmove: a value
 * being returned may point into the output buffer (a host answer, sv_ret_alloc), overlapping where the
 * header bytes go.
 */
static void put_value(uint8_t *b, const sv_value *v) {
  switch (v->type) {
  case SV_I32: case SV_U32: case SV_F32: st32(b + 1, v->u32); break;
  case SV_I64: case SV_U64: case SV_F64: st64(b + 1, v->u64); break;
  case SV_BOOL: b[1] = v->b ? 1 : 0; break;
  case SV_STRING: case SV_BYTES:
    if (v->bytes.len) memmove(b + 5, v->bytes.ptr, v->bytes.len);
    st32(b + 1, v->bytes.len);
    break;
  default: break;
  }
  b[0] = (uint8_t)v->type;
}

/* ---- errors ---- */

int32_t sv_error(int32_t code, const char *msg) {
  struct sv_ctx *c = SV_CTX;
  if (code == 0) code = SV_ERR_GUEST;
  size_t n = msg ? strlen(msg) : 0;
  if (n > SV_MAX_ERROR_LEN) n = SV_MAX_ERROR_LEN;
  if (n) memmove(c->err, msg, n);
  c->err[n] = 0;
  c->err_len = (uint32_t)n;
  c->err_code = code;
  return code;
}

int32_t sv_errorf(int32_t code, const char *fmt, ...) {
  struct sv_ctx *c = SV_CTX;
  va_list ap;
  va_start(ap, fmt);
  int n = sv_vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > SV_MAX_ERROR_LEN) n = SV_MAX_ERROR_LEN;
  c->err_len = (uint32_t)n;
  c->err_code = code ? code : SV_ERR_GUEST;
  return c->err_code;
}

static const char *default_message(int32_t code) {
  switch (code) {
  case SV_ERR_GUEST: return "guest error";
  case SV_ERR_HOST: return "host function failed";
  case SV_ERR_BAD_ARGS: return "bad arguments";
  case SV_ERR_NO_MEMORY: return "out of memory";
  case SV_ERR_OUTPUT_TOO_LARGE: return "output too large";
  default: return "guest function failed";
  }
}

/* Status 1 result (CALL error or init error): u32 status, u32 code, u32 len, message (cut to fit). */
static void put_error_result(int32_t code) {
  struct sv_ctx *c = SV_CTX;
  if (c->err_code == 0) sv_error(code, default_message(code));
  uint8_t *o = sv_rt.out;
  uint64_t len = c->err_len;
  if (len > sv_rt.out_size - 12) len = sv_rt.out_size - 12;
  memcpy(o + 12, c->err, len);
  st32(o, STATUS_ERROR);
  st32(o + 4, (uint32_t)code);
  st32(o + 8, (uint32_t)len);
}

/* ---- registration and init ---- */

void sv_init_error(int32_t code, const char *msg) {
  if (g_init_done) sv_panic("sv_init_error called outside guest_main");
  if (SV_CTX->err_code == 0) sv_error(code, msg); /* the first problem is the useful one */
}

static void register_error(const char *name, const char *why) {
  if (SV_CTX->err_code == 0) sv_errorf(SV_ERR_GUEST, "sv_register(\"%.64s\"): %s", name ? name : "(null)", why);
}

static const struct fn_entry *lookup(const uint8_t *name, uint32_t len) {
  for (uint32_t i = 0; i < g_nfns; i++) {
    if (g_fns[i].name_len == len && memcmp(g_fns[i].name, name, len) == 0) return &g_fns[i];
  }
  return NULL;
}

void sv_register(const char *name, sv_type ret, uint32_t nparams, const sv_type *params, sv_guest_fn fn) {
  if (g_init_done) sv_panic("sv_register called outside guest_main");
  if (name == NULL || fn == NULL) { register_error(name, "name and function must not be NULL"); return; }
  size_t len = strlen(name);
  if (len == 0 || len > SV_MAX_NAME_LEN) { register_error(name, "name must be 1 to 255 bytes"); return; }
  if ((uint32_t)ret > SV_BYTES) { register_error(name, "invalid return type"); return; }
  if (nparams > SV_MAX_PARAMS) { register_error(name, "more than 16 parameters"); return; }
  if (nparams && params == NULL) { register_error(name, "params is NULL"); return; }
  for (uint32_t i = 0; i < nparams; i++) {
    if (params[i] == SV_VOID || (uint32_t)params[i] > SV_BYTES) { register_error(name, "invalid parameter type"); return; }
  }
  if (lookup((const uint8_t *)name, (uint32_t)len)) { register_error(name, "name already registered"); return; }
  if (g_nfns == SV_MAX_FUNCTIONS) { register_error(name, "more than 256 functions"); return; }
  if (NAME_POOL_SIZE - g_names_used < len) { register_error(name, "function names exceed 8 KiB in total"); return; }
  struct fn_entry *e = &g_fns[g_nfns++];
  memcpy(g_names + g_names_used, name, len);
  e->name = g_names + g_names_used;
  g_names_used += (uint32_t)len;
  e->name_len = (uint8_t)len;
  e->ret = (uint8_t)ret;
  e->nparams = (uint8_t)nparams;
  for (uint32_t i = 0; i < nparams; i++) e->params[i] = (uint8_t)params[i];
  e->fn = fn;
}

uint64_t sv_init_arg(void) { return sv_rt.init_arg; }

/* Checks the boot record; on a problem sets the init error and returns false. */
static bool check_boot(uint32_t version) {
  if (version != SNAPVM_ABI_VERSION) {
    sv_errorf(SV_ERR_GUEST, "guest built for ABI version %d, host uses version %u", SNAPVM_ABI_VERSION, version);
    return false;
  }
  uint64_t heap_end = sv_rt.heap_base + sv_rt.heap_size;
  if (heap_end < sv_rt.heap_base || sv_rt.heap_base < (uint64_t)__image_end ||
      heap_end > (uint64_t)sv_rt.in - SV_MAILBOX_SIZE - SV_CTX_SIZE) {
    sv_error(SV_ERR_GUEST, "boot record: the heap overlaps the image or the stack");
    return false;
  }
  return true;
}

/* Called from _start with the boot record; returns after sending the init result. */
void sv_rt_init(const uint8_t *boot) {
  /* Without a valid record there is no known output buffer to report through: crash visibly. */
  if (ld32(boot) != BOOT_MAGIC) __builtin_trap();
  sv_rt.heap_base = ld64(boot + 8);
  sv_rt.heap_size = ld64(boot + 16);
  sv_rt.in = (uint8_t *)ld64(boot + 24);
  sv_rt.in_size = ld64(boot + 32);
  sv_rt.out = (uint8_t *)ld64(boot + 40);
  sv_rt.out_size = ld64(boot + 48);
  sv_rt.log_level = ld32(boot + 56);
  sv_rt.init_arg = ld64(boot + 64);
  /* The context sits below `in`, and results need room for at least an error header. */
  if (sv_rt.in != boot || sv_rt.in_size < BOOT_RECORD_SIZE || sv_rt.out_size < 16) __builtin_trap();

  struct sv_ctx *c = SV_CTX;
  c->mb_host_seen = 0;
  c->mb_guest_seq = 0;
  c->log_level = sv_rt.log_level;
  c->err_code = 0;
  c->err_len = 0;
  c->host_err = "";
  c->host_err_len = 0;

  if (check_boot(ld32(boot + 4))) {
    sv_heap_init(sv_rt.heap_base, sv_rt.heap_size);
    guest_main();
  }
  g_init_done = true;
  /* Init result: status 0, dispatch_addr, then the function list (saves the host a LIST request). */
  if (c->err_code == 0 && put_function_list(12)) {
    st32(sv_rt.out, STATUS_OK);
    st64(sv_rt.out + 4, (uint64_t)sv_dispatch);
  } else {
    put_error_result(c->err_code);
  }
  SV_OUT(SV_PORT_DONE);
}

/* ---- requests ---- */

static void bad_request(const char *why) {
  sv_errorf(SV_ERR_BAD_ARGS, "malformed request: %s", why);
  put_error_result(SV_ERR_BAD_ARGS);
}

static void handle_call(struct rd *r) {
  uint32_t nlen, argc;
  if (!rd_u32(r, &nlen) || nlen > r->size - r->pos) { bad_request("function name exceeds the input buffer"); return; }
  const uint8_t *name = r->p + r->pos;
  r->pos += nlen;
  const struct fn_entry *f = lookup(name, nlen);
  if (!f) {
    st32(sv_rt.out, STATUS_NOT_FOUND);
    return;
  }
  if (!rd_u32(r, &argc)) { bad_request("truncated argument count"); return; }
  if (argc != f->nparams) {
    sv_errorf(SV_ERR_BAD_ARGS, "%.*s: expected %u arguments, got %u", (int)nlen, name, f->nparams, argc);
    put_error_result(SV_ERR_BAD_ARGS);
    return;
  }
  sv_value args[SV_MAX_PARAMS];
  for (uint32_t i = 0; i < argc; i++) {
    const char *why = rd_value(r, &args[i]);
    if (why) { bad_request(why); return; }
    if ((uint32_t)args[i].type != f->params[i]) {
      sv_errorf(SV_ERR_BAD_ARGS, "%.*s: argument %u: expected %s, got %s", (int)nlen, name, i + 1,
                type_name(f->params[i]), type_name(args[i].type));
      put_error_result(SV_ERR_BAD_ARGS);
      return;
    }
  }
  for (uint32_t i = 0; i < argc; i++) {
    if (args[i].type == SV_STRING) args[i].str.ptr = terminate(r->p, r->size, args[i].str.ptr, args[i].str.len);
  }

  sv_value ret = {.type = (sv_type)f->ret};
  int32_t rc = f->fn(args, argc, &ret);
  if (rc != SV_OK) { put_error_result(rc); return; }
  bool ok;
  uint64_t n = payload_size(&ret, &ok);
  if ((uint32_t)ret.type != f->ret || !ok) {
    sv_errorf(SV_ERR_GUEST, "%.*s: returned an invalid %s value, its registered return type is %s", (int)nlen, name,
              type_name(ret.type), type_name(f->ret));
    put_error_result(SV_ERR_GUEST);
    return;
  }
  if (n > sv_rt.out_size - 5) {
    sv_errorf(SV_ERR_OUTPUT_TOO_LARGE, "output too large: the result needs %lu bytes, the output buffer has %lu",
              (unsigned long)(n + 5), (unsigned long)sv_rt.out_size);
    put_error_result(SV_ERR_OUTPUT_TOO_LARGE);
    return;
  }
  put_value(sv_rt.out + 4, &ret); /* payload before the status word: see put_value */
  st32(sv_rt.out, STATUS_OK);
}

/*
 * Writes `u32 count` and the function descriptions at pos (the LIST result and the init result both carry
 * them). Returns false, with the error set, if they do not fit.
 */
static bool put_function_list(uint64_t pos) {
  uint8_t *o = sv_rt.out;
  uint64_t cap = sv_rt.out_size;
  st32(o + pos, g_nfns); /* pos + 4 <= 16 <= cap */
  pos += 4;
  for (uint32_t i = 0; i < g_nfns; i++) {
    const struct fn_entry *f = &g_fns[i];
    uint64_t need = 4 + (uint64_t)f->name_len + 1 + 4 + f->nparams;
    if (cap - pos < need) {
      sv_errorf(SV_ERR_OUTPUT_TOO_LARGE, "output too large: the function list does not fit in %lu bytes",
                (unsigned long)cap);
      return false;
    }
    st32(o + pos, f->name_len);
    memcpy(o + pos + 4, f->name, f->name_len);
    pos += 4 + f->name_len;
    o[pos++] = f->ret;
    st32(o + pos, f->nparams);
    pos += 4;
    for (uint32_t k = 0; k < f->nparams; k++) o[pos++] = f->params[k];
  }
  return true;
}

static void handle_list(void) {
  if (!put_function_list(4)) {
    put_error_result(SV_ERR_OUTPUT_TOO_LARGE);
    return;
  }
  st32(sv_rt.out, STATUS_OK);
}

static void handle_request(void) {
  struct sv_ctx *c = SV_CTX;
  c->log_level = SV_LOG_OFF;
  c->err_code = 0;
  c->err_len = 0;
  c->host_err = "";
  c->host_err_len = 0;
  struct rd r = {sv_rt.in, sv_rt.in_size, 0};
  uint32_t kind, level;
  if (!rd_u32(&r, &kind) || !rd_u32(&r, &level)) { bad_request("truncated header"); return; }
  c->log_level = level;
  if (kind == REQ_CALL) { handle_call(&r); return; }
  if (kind == REQ_LIST) { handle_list(); return; }
  sv_errorf(SV_ERR_BAD_ARGS, "malformed request: unknown kind %u", kind);
  put_error_result(SV_ERR_BAD_ARGS);
}

/* ---- the mailbox (hot mode) ---- */

static inline bool hot(void) { return SV_MB->mode == SV_MB_MODE_HOT; }

/* Posts a message whose content is in the output buffer: kind first, then the sequence number (release). */
static void mb_post(uint32_t kind) {
  struct sv_ctx *c = SV_CTX;
  SV_MB->kind = kind;
  __atomic_store_n(&SV_MB->guest_seq, ++c->mb_guest_seq, __ATOMIC_RELEASE);
}

/*
 * Waits for the host's next post (a request, or the answer to a message). Polls without exiting; after
 * idle_tsc ticks without news it parks: `out DONE` exits to the host, which resumes the guest once it has
 * posted something (or at once, after a spurious exit). The host reads no register or state of the park.
 */
static void mb_wait(void) {
  struct sv_ctx *c = SV_CTX;
  volatile struct sv_mailbox *m = SV_MB;
  uint32_t seen = c->mb_host_seen, now;
  uint64_t start = __builtin_ia32_rdtsc();
  while ((now = __atomic_load_n(&m->host_seq, __ATOMIC_ACQUIRE)) == seen) {
    __builtin_ia32_pause();
    if (__builtin_ia32_rdtsc() - start >= m->idle_tsc) {
      SV_OUT(SV_PORT_DONE);
      start = __builtin_ia32_rdtsc();
    }
  }
  c->mb_host_seen = now;
}

/* Entered from sv_dispatch (start.S), i.e. dispatch_addr. */
__attribute__((noreturn)) void sv_rt_dispatch_loop(void) {
  for (;;) {
    if (hot()) {
      mb_wait();
      handle_request();
      mb_post(SV_MB_DONE);
    } else {
      handle_request();
      SV_OUT(SV_PORT_DONE);
    }
  }
}

/* ---- services for guest functions ---- */

void *sv_ret_alloc(sv_value *ret, sv_type type, uint32_t len) {
  if ((type != SV_STRING && type != SV_BYTES) || len > sv_rt.out_size - 9) return NULL;
  uint8_t *p = sv_rt.out + 9; /* after u32 status, u8 tag, u32 len: where put_value puts the payload */
  ret->type = type;
  ret->bytes.ptr = p;
  ret->bytes.len = len;
  return p;
}

/* Host-call failure made up by the runtime: the text goes in the (consumed) output buffer. */
static int32_t host_fail(int32_t code, const char *fmt, const char *name, const char *detail) {
  struct sv_ctx *c = SV_CTX;
  int n = sv_snprintf((char *)sv_rt.out, sv_rt.out_size, fmt, name, detail);
  c->host_err = (const char *)sv_rt.out;
  c->host_err_len = (uint32_t)((uint64_t)n < sv_rt.out_size ? (uint64_t)n : sv_rt.out_size - 1);
  return code;
}

int32_t sv_call_host(const char *name, sv_type ret_type, const sv_value *args, uint32_t argc, sv_value *result) {
  struct sv_ctx *c = SV_CTX;
  c->host_err = "";
  c->host_err_len = 0;
  uint8_t *o = sv_rt.out;
  uint64_t cap = sv_rt.out_size;
  size_t nlen = strlen(name);
  uint64_t need = 8 + (uint64_t)nlen;
  bool ok = (uint32_t)ret_type <= SV_BYTES && (argc == 0 || args);
  for (uint32_t i = 0; ok && i < argc; i++) {
    need += 1 + payload_size(&args[i], &ok);
    if (args[i].type == SV_VOID) ok = false;
  }
  if (!ok) return host_fail(SV_ERR_BAD_ARGS, "host call %.64s: invalid %s", name, "argument or return type");
  if (need > cap) return host_fail(SV_ERR_OUTPUT_TOO_LARGE, "host call %.64s: %s", name, "arguments do not fit in the output buffer");

  st32(o, (uint32_t)nlen);
  memcpy(o + 4, name, nlen);
  uint64_t pos = 4 + nlen;
  st32(o + pos, argc);
  pos += 4;
  for (uint32_t i = 0; i < argc; i++) {
    bool dummy;
    uint64_t n = payload_size(&args[i], &dummy);
    put_value(o + pos, &args[i]);
    pos += 1 + n;
  }
  if (hot()) {
    mb_post(SV_MB_HOST_CALL);
    mb_wait();
  } else {
    SV_OUT(SV_PORT_HOST_CALL);
  }

  struct rd r = {o, cap, 0};
  uint32_t status = 0, len;
  rd_u32(&r, &status); /* cannot fail: cap >= 16 */
  if (status == STATUS_OK) {
    sv_value v;
    const char *why = rd_value(&r, &v);
    if (why) return host_fail(SV_ERR_HOST, "host function %.64s: bad answer: %s", name, why);
    if (v.type != ret_type) return host_fail(SV_ERR_HOST, "host function %.64s returned %s", name, type_name(v.type));
    if (v.type == SV_STRING) v.str.ptr = terminate(o, cap, v.str.ptr, v.str.len);
    if (result) *result = v;
    return SV_OK;
  }
  if (status == STATUS_ERROR && rd_u32(&r, &len) && len <= cap - r.pos) {
    c->host_err = terminate(o, cap, (const char *)o + r.pos, len);
    c->host_err_len = len;
    return SV_ERR_HOST;
  }
  return host_fail(SV_ERR_HOST, "host function %.64s: %s", name, "malformed answer");
}

const char *sv_last_host_error(void) { return SV_CTX->host_err; }

int32_t sv_print(const char *s) {
  sv_value arg = sv_string(s), r;
  return sv_call_host("HostPrint", SV_I32, &arg, 1, &r) == SV_OK ? r.i32 : -1;
}

/* Log and abort records: u32 a, u32 len, message. Message first, as it may lie in the output buffer. */
static void put_record(uint32_t a, const char *msg) {
  uint64_t len = msg ? strlen(msg) : 0;
  if (len > sv_rt.out_size - 8) len = sv_rt.out_size - 8;
  if (len) memmove(sv_rt.out + 8, msg, len);
  st32(sv_rt.out, a);
  st32(sv_rt.out + 4, (uint32_t)len);
}

void sv_log(uint32_t level, const char *msg) {
  if (level > SV_LOG_ERROR) level = SV_LOG_ERROR;
  if (level < SV_CTX->log_level) return;
  put_record(level, msg);
  if (hot()) {
    mb_post(SV_MB_LOG);
    mb_wait();
  } else {
    SV_OUT(SV_PORT_LOG);
  }
}

void sv_logf(uint32_t level, const char *fmt, ...) {
  if (level > SV_LOG_ERROR) level = SV_LOG_ERROR;
  if (level < SV_CTX->log_level) return; /* skip the formatting too */
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  sv_vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  sv_log(level, buf);
}

void sv_abort(uint32_t code, const char *msg) {
  put_record(code, msg);
  for (;;) {
    SV_OUT(SV_PORT_ABORT);
    __builtin_trap(); /* the host never resumes an aborted guest; if it does, fault visibly */
  }
}

void sv_panic(const char *msg) { sv_abort(SV_PANIC_CODE, msg); }
