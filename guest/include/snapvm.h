/*
 * snapvm guest SDK. Include this, write guest_main() that registers your functions, and link with the
 * runtime in guest/runtime/ and guest/link.ld (see guest/README.md for the gcc command).
 *
 * The guest is freestanding: there is no libc. The runtime provides what is declared here (a heap
 * allocator and the few string functions gcc may emit calls to), nothing else.
 */
#ifndef SNAPVM_H
#define SNAPVM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Must equal the host's ABI_VERSION (docs/ABI.md); the runtime refuses to start on a mismatch. */
#define SNAPVM_ABI_VERSION 4

/* Value types; the numbers are the ABI's wire tags. */
typedef enum sv_type {
  SV_VOID = 0,
  SV_I32 = 1,
  SV_U32 = 2,
  SV_I64 = 3,
  SV_U64 = 4,
  SV_F32 = 5,
  SV_F64 = 6,
  SV_BOOL = 7,
  SV_STRING = 8, /* UTF-8, not validated by the runtime */
  SV_BYTES = 9,
} sv_type;

/*
 * A tagged value. Strings the runtime hands you (arguments, host results, host error messages) are
 * also NUL-terminated (str.ptr[str.len] == 0), so they can be passed to C string functions unless they
 * contain NUL bytes themselves.
 */
typedef struct sv_value {
  sv_type type;
  union {
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f32;
    double f64;
    bool b;
    struct { const char *ptr; uint32_t len; } str;     /* SV_STRING */
    struct { const uint8_t *ptr; uint32_t len; } bytes; /* SV_BYTES */
  };
} sv_value;

/* Error codes of a failed call (ABI "Error codes"); guest-defined codes start at SV_ERR_USER. */
#define SV_OK 0
#define SV_ERR_GUEST 1            /* generic guest error */
#define SV_ERR_HOST 2             /* a host function failed */
#define SV_ERR_BAD_ARGS 3         /* wrong argument count or types */
#define SV_ERR_NO_MEMORY 4        /* out of memory */
#define SV_ERR_OUTPUT_TOO_LARGE 5 /* the result does not fit in the output buffer */
#define SV_ERR_USER 100

/* Log levels. A record is sent only if its level is at or above the current request's level. */
#define SV_LOG_TRACE 0
#define SV_LOG_DEBUG 1
#define SV_LOG_INFO 2
#define SV_LOG_WARN 3
#define SV_LOG_ERROR 4
#define SV_LOG_OFF 5

/* Limits of the runtime. */
#define SV_MAX_FUNCTIONS 256   /* registered functions */
#define SV_MAX_PARAMS 16       /* parameters per function */
#define SV_MAX_NAME_LEN 255    /* bytes in a function name */
#define SV_MAX_ERROR_LEN 1024  /* bytes of an error message kept by sv_error (longer ones are cut) */

/*
 * A guest function. args[i].type always equals the registered parameter type (the runtime checks);
 * *ret is preset to a zero value of the registered return type. Return SV_OK, or an error code
 * (preferably through sv_error to attach a message). Pointers in *ret must stay valid after the
 * function returns: use static or heap memory, the arguments, a host result, or sv_ret_alloc() —
 * never the function's own stack.
 */
typedef int32_t (*sv_guest_fn)(const sv_value *args, uint32_t argc, sv_value *ret);

/* Provided by the guest author: registers functions. Runs once, when the sandbox is initialised. */
void guest_main(void);

/*
 * Registers a function (only from guest_main). name and params are copied. A bad registration
 * (duplicate or overlong name, bad type, too many functions or parameters) makes initialisation fail
 * with an explanatory message.
 */
void sv_register(const char *name, sv_type ret, uint32_t nparams, const sv_type *params, sv_guest_fn fn);

/* Makes initialisation fail with this code and message (call from guest_main). */
void sv_init_error(int32_t code, const char *msg);

/* guest_init_arg from the sandbox configuration (boot record init_arg); meaning is up to the guest. */
uint64_t sv_init_arg(void);

/*
 * Sets the error message of the current call and returns code, so `return sv_error(code, "...")` works.
 * msg is copied (at most SV_MAX_ERROR_LEN bytes). Code 0 is turned into SV_ERR_GUEST.
 * A function that returns an error code without calling sv_error gets a default message.
 */
int32_t sv_error(int32_t code, const char *msg);
/* sv_error with a sv_snprintf format. */
int32_t sv_errorf(int32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Calls a host function. Returns SV_OK and stores the result in *result (may be NULL), or:
 * SV_ERR_HOST if the host function failed (message: sv_last_host_error()), SV_ERR_OUTPUT_TOO_LARGE if
 * the call does not fit in the output buffer, SV_ERR_BAD_ARGS for an invalid argument value.
 * The host's answer lives in the output buffer: strings/bytes in *result and sv_last_host_error() stay
 * valid only until the next host call, sv_log, sv_print, sv_ret_alloc or the end of the guest call.
 * Arguments must not point into the output buffer (copy such a previous result first).
 */
int32_t sv_call_host(const char *name, sv_type ret_type, const sv_value *args, uint32_t argc,
                     sv_value *result);
/* Message of the last failed sv_call_host in this call ("" if none). */
const char *sv_last_host_error(void);

/* Calls the built-in host function HostPrint(string) -> i32; returns its result, or -1 if it failed. */
int32_t sv_print(const char *s);

/* Sends a log record (level SV_LOG_TRACE..SV_LOG_ERROR; higher values count as SV_LOG_ERROR). */
void sv_log(uint32_t level, const char *msg);
void sv_logf(uint32_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stops the sandbox for good: the host reports an abort with this code and message. */
__attribute__((noreturn)) void sv_abort(uint32_t code, const char *msg);
/* sv_abort with code SV_PANIC_CODE. */
#define SV_PANIC_CODE 1
__attribute__((noreturn)) void sv_panic(const char *msg);

/*
 * Returns a buffer of len bytes that is placed where the call's result goes in the output buffer, and
 * sets *ret to a value of `type` (SV_STRING or SV_BYTES) pointing at it, so large results need no copy.
 * Returns NULL if the result would not fit: then return SV_ERR_OUTPUT_TOO_LARGE.
 */
void *sv_ret_alloc(sv_value *ret, sv_type type, uint32_t len);

/* Heap (the boot record's heap region). malloc returns 16-byte aligned memory or NULL when full. */
void *malloc(size_t n);
void free(void *p);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
/* Largest block malloc could return right now. */
size_t sv_heap_available(void);

/*
 * Clones (ABI 3). The host writes a new, never-zero generation into a read-only info page whenever this
 * guest's memory is restored from a snapshot or a new sandbox starts from one, so two sandboxes made from
 * one snapshot, or one sandbox before and after a restore, see different generations. Random numbers
 * derived from state in a snapshot would repeat across clones: sv_random() reseeds itself from fresh
 * host entropy whenever the generation changed.
 */
uint64_t sv_generation(void);
/* A 64-bit random number: xoshiro256** seeded from host entropy, reseeded on every new generation. */
uint64_t sv_random(void);
/* rand() of the C library, from sv_random(): 0..SV_RAND_MAX. */
#define SV_RAND_MAX 0x7fffffff
int rand(void);

/* The C library functions gcc may emit calls to, plus a few string helpers. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strcpy(char *dst, const char *src);
char *strchr(const char *s, int c);

/*
 * Small snprintf: %d %i %u %x %X %o %c %s %p %%, flags '-' and '0', width and precision (also '*'),
 * length modifiers hh h l ll z j t. No floating point. Always NUL-terminates when n > 0; returns the
 * length the full output would have.
 */
int sv_snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int sv_vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);

/* Value constructors. */
static inline sv_value sv_void(void) { sv_value v = {.type = SV_VOID}; return v; }
static inline sv_value sv_i32(int32_t x) { sv_value v = {.type = SV_I32, .i32 = x}; return v; }
static inline sv_value sv_u32(uint32_t x) { sv_value v = {.type = SV_U32, .u32 = x}; return v; }
static inline sv_value sv_i64(int64_t x) { sv_value v = {.type = SV_I64, .i64 = x}; return v; }
static inline sv_value sv_u64(uint64_t x) { sv_value v = {.type = SV_U64, .u64 = x}; return v; }
static inline sv_value sv_f32(float x) { sv_value v = {.type = SV_F32, .f32 = x}; return v; }
static inline sv_value sv_f64(double x) { sv_value v = {.type = SV_F64, .f64 = x}; return v; }
static inline sv_value sv_bool(bool x) { sv_value v = {.type = SV_BOOL, .b = x}; return v; }
static inline sv_value sv_string_n(const char *p, uint32_t len) {
  sv_value v = {.type = SV_STRING};
  v.str.ptr = p;
  v.str.len = len;
  return v;
}
static inline sv_value sv_string(const char *s) { return sv_string_n(s, (uint32_t)strlen(s)); }
static inline sv_value sv_bytes(const void *p, uint32_t len) {
  sv_value v = {.type = SV_BYTES};
  v.bytes.ptr = (const uint8_t *)p;
  v.bytes.len = len;
  return v;
}

#endif
