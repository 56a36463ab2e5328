/*
 * Entry points. Both start with RSP = stack_top (page aligned); the top SV_MAILBOX_SIZE bytes of the stack
 * are the mailbox and the SV_CTX_SIZE bytes below it the per-request context (see internal.h). Both are
 * multiples of 16, so each `call` below enters C with RSP = 8 mod 16, as the SysV ABI requires.
 */
#include "internal.h"

	.section .text.start, "ax", @progbits
	.globl _start
	.type _start, @function
/* Initialise: RDI = boot record (in the input buffer). */
_start:
	xor %ebp, %ebp
	mov %rsp, %rbx			/* stack_top, callee-saved across the call */
	sub $(SV_CTX_SIZE + SV_MAILBOX_SIZE), %rsp
	call sv_rt_init			/* copies the boot record, runs guest_main, sends the init result */
	mov %rbx, %rsp			/* enter the loop exactly as after a snapshot restore */
	jmp sv_dispatch
	.size _start, . - _start

/* dispatch_addr: the host resumes here (RSP = stack_top) after restoring a snapshot. Never returns. */
	.globl sv_dispatch
	.type sv_dispatch, @function
sv_dispatch:
	xor %ebp, %ebp
	sub $(SV_CTX_SIZE + SV_MAILBOX_SIZE), %rsp
	call sv_rt_dispatch_loop
	ud2
	.size sv_dispatch, . - sv_dispatch

	.section .note.GNU-stack, "", @progbits
