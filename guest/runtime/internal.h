/* Runtime internals shared by the runtime's C files and start.S. Not part of the public API. */
#ifndef SV_INTERNAL_H
#define SV_INTERNAL_H

/*
 * Per-request state lives in the top SV_CTX_SIZE bytes of the stack, not in .bss: the stack is in the
 * scratch region, so a call that does not touch globals or the heap dirties no page of the persistent
 * region (which is what snapshots save and restores copy back). Multiple of 16 to keep the stack aligned.
 */
#define SV_CTX_SIZE 1072

#define SV_PORT_DONE 0xE0
#define SV_PORT_HOST_CALL 0xE1
#define SV_PORT_ABORT 0xE2
#define SV_PORT_LOG 0xE3

/* The info page (ABI 3): generation u64 @0, seed 32 bytes @8; read-only for the guest. */
#define SV_INFO_ADDR 0x1FF000

#ifndef __ASSEMBLER__
#include "snapvm.h"

struct sv_ctx {
  uint32_t log_level;     /* of the current request (boot record's during init) */
  int32_t err_code;       /* set by sv_error; 0 = none */
  uint32_t err_len;
  uint32_t host_err_len;
  const char *host_err;   /* message of the last failed host call, NUL-terminated */
  char err[SV_MAX_ERROR_LEN + 1];
};
_Static_assert(sizeof(struct sv_ctx) <= SV_CTX_SIZE, "SV_CTX_SIZE too small");
_Static_assert(SV_CTX_SIZE % 16 == 0, "SV_CTX_SIZE must keep the stack 16-byte aligned");

/* Copied out of the boot record at init; read-only afterwards. */
struct sv_boot {
  uint64_t heap_base, heap_size;
  uint8_t *in;
  uint64_t in_size;
  uint8_t *out;
  uint64_t out_size;
  uint32_t log_level;
  uint64_t init_arg;
};
extern struct sv_boot sv_rt;

/* The context sits right below the input buffer, i.e. at the top of the stack. */
#define SV_CTX ((struct sv_ctx *)(sv_rt.in - SV_CTX_SIZE))

/* `out` to a guest port: the host reads/writes guest memory meanwhile, hence the memory clobber. */
#define SV_OUT(port) __asm__ volatile("outl %%eax, %0" : : "N"(port), "a"(0) : "memory")

void sv_heap_init(uint64_t base, uint64_t size);
#endif
#endif
