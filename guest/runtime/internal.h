/* Runtime internals shared by the runtime's C files and start.S. Not part of the public API. */
#ifndef SV_INTERNAL_H
#define SV_INTERNAL_H

/*
 * Per-request state lives in SV_CTX_SIZE bytes at the top of the stack (below the mailbox), not in .bss:
 * the stack is in the scratch region, so a call that does not touch globals or the heap dirties no page of
 * the persistent region (which is what snapshots save and restores copy back). Multiple of 16 to keep the
 * stack aligned.
 */
#define SV_CTX_SIZE 1072

#define SV_PORT_DONE 0xE0
#define SV_PORT_HOST_CALL 0xE1
#define SV_PORT_ABORT 0xE2
#define SV_PORT_LOG 0xE3

/* The info page (ABI 3): generation u64 @0, seed 32 bytes @8; read-only for the guest. */
#define SV_INFO_ADDR 0x1FF000

/*
 * The mailbox (ABI 4, docs/ABI.md "Hot mode"): the top SV_MAILBOX_SIZE bytes of the stack, right below the
 * input buffer. Line 0 is the host's (host_seq, mode, idle_tsc), line 1 the guest's (guest_seq, kind).
 * In hot mode the guest waits for requests and host-call answers there instead of exiting.
 */
#define SV_MAILBOX_SIZE 128
#define SV_MB_MODE_HOT 1
#define SV_MB_DONE 1
#define SV_MB_HOST_CALL 2
#define SV_MB_LOG 3

#ifndef __ASSEMBLER__
#include "snapvm.h"

struct sv_ctx {
  uint32_t mb_host_seen;  /* the last host_seq taken from the mailbox (kept across requests) */
  uint32_t mb_guest_seq;  /* the last guest_seq posted to it */
  uint32_t log_level;     /* of the current request (boot record's during init) */
  int32_t err_code;       /* set by sv_error; 0 = none */
  uint32_t err_len;
  uint32_t host_err_len;
  const char *host_err;   /* message of the last failed host call, NUL-terminated */
  char err[SV_MAX_ERROR_LEN + 1];
};
_Static_assert(sizeof(struct sv_ctx) <= SV_CTX_SIZE, "SV_CTX_SIZE too small");
_Static_assert(SV_CTX_SIZE % 16 == 0, "SV_CTX_SIZE must keep the stack 16-byte aligned");

struct sv_mailbox {
  volatile uint32_t host_seq; /* bumped by the host for each request or answer it posts */
  volatile uint32_t mode;     /* SV_MB_MODE_HOT: poll the mailbox; anything else: exit-based calls */
  volatile uint64_t idle_tsc; /* TSC ticks to poll without news before parking (out DONE) */
  uint8_t pad0[48];
  volatile uint32_t guest_seq; /* bumped by the guest for each message it posts */
  volatile uint32_t kind;      /* SV_MB_DONE, SV_MB_HOST_CALL or SV_MB_LOG */
  uint8_t pad1[56];
};
_Static_assert(sizeof(struct sv_mailbox) == SV_MAILBOX_SIZE, "mailbox size");
_Static_assert(__builtin_offsetof(struct sv_mailbox, idle_tsc) == 8, "mailbox idle_tsc");
_Static_assert(__builtin_offsetof(struct sv_mailbox, guest_seq) == 64, "mailbox guest_seq");
_Static_assert(__builtin_offsetof(struct sv_mailbox, kind) == 68, "mailbox kind");

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

/* The mailbox is the top of the stack, right below the input buffer; the context sits below it. */
#define SV_MB ((struct sv_mailbox *)(sv_rt.in - SV_MAILBOX_SIZE))
#define SV_CTX ((struct sv_ctx *)(sv_rt.in - SV_MAILBOX_SIZE - SV_CTX_SIZE))

/* `out` to a guest port: the host reads/writes guest memory meanwhile, hence the memory clobber. */
#define SV_OUT(port) __asm__ volatile("outl %%eax, %0" : : "N"(port), "a"(0) : "memory")

void sv_heap_init(uint64_t base, uint64_t size);
#endif
#endif
