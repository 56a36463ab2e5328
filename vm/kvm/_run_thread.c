/*
 * The vCPU run thread: a plain OS thread that runs one KVM vCPU on behalf of a JavaScript thread, so that
 * `KVM_RUN` never blocks an event loop. Compiled by vm/kvm/build_run_thread.ts into position-independent
 * machine code without libc (raw system calls only) and carried as bytes in _run_thread_image.ts.
 *
 * The owner (the JavaScript side, vm/kvm/run_thread.ts) and the thread share one control block (struct
 * ctrl below, one page). The owner posts a command by writing it and bumping `cmd_seq` (a futex it wakes);
 * the thread runs it and publishes the result by setting `done_seq` to the command's sequence number (a
 * futex the owner waits on, with a nonblocking FFI call in asynchronous code). Nothing else is shared.
 *
 * Signals: the thread blocks every signal outside KVM_RUN; inside, the vCPU's KVM_SET_SIGNAL_MASK applies
 * (SIGUSR2 unblocked). A SIGUSR2 that interrupts KVM_RUN is consumed here. It is reported to the owner only
 * when it means something: the owner asked for it (`kick`, to park a hot guest), the call was killed
 * through its interrupt handle (the call-state words), or the call's deadline has passed. Any other
 * interruption (the heartbeat, a stray signal) re-enters the guest at once.
 *
 * Orphans: in a Worker, the thread checks every `heartbeat_ms` whether the owner thread still exists (a
 * pidfd of the owner thread that becomes readable when it exits; `tgkill(pid, tid, 0)` where pidfds of
 * threads are not supported). When the owner has gone (a Worker terminated while a call was in flight, or
 * one that ended without closing its sandbox), the thread releases the vCPU itself (unmaps kvm_run and the
 * guest memory, closes the vCPU and VM fds), detaches and ends. The heartbeat timer makes KVM_RUN return at
 * least that often, so a guest that never exits cannot keep the thread in the guest.
 */
#include <stdint.h>

#define SYS_close 3
#define SYS_poll 7
#define SYS_munmap 11
#define SYS_rt_sigprocmask 14
#define SYS_ioctl 16
#define SYS_gettid 186
#define SYS_rt_sigtimedwait 128
#define SYS_prctl 157
#define SYS_arch_prctl 158
#define SYS_futex 202
#define SYS_timer_create 222
#define SYS_timer_settime 223
#define SYS_timer_delete 226
#define SYS_clock_gettime 228
#define SYS_tgkill 234

#define EINTR 4
#define EAGAIN 11
#define ESRCH 3
#define KVM_RUN 0xae80
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define CLOCK_MONOTONIC 1
#define TIMER_ABSTIME 1
#define SIGEV_THREAD_ID 4
#define PR_SET_NAME 15
#define PR_SET_TIMERSLACK 29
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004
#define POLLIN 1

/* Commands (ctrl.cmd). */
#define CMD_RUN 1
#define CMD_STOP 2
/* ctrl.flags: reset the data segment selectors before this run (an entry, see vm/kvm/host_segments.ts). */
#define FLAG_RESET_SEGMENTS 1
/* ctrl.state */
#define STATE_STARTING 0
#define STATE_READY 1
#define STATE_STOPPED 2
#define STATE_ORPHANED 3
#define STATE_ORPHANING 4

struct ctrl {
  /* Line 0, written by the owner. */
  uint32_t cmd_seq;    /* 0: futex; bumped by the owner for each command */
  uint32_t cmd;        /* 4 */
  uint32_t flags;      /* 8 */
  uint32_t kick;       /* 12: nonzero: report the next interruption (the owner parks the guest) */
  int64_t deadline_ns; /* 16: CLOCK_MONOTONIC deadline of the current call, 0 = none */
  uint64_t call_state; /* 24: address of the call's three i32 words (running, call seq, kill seq), or 0 */
  uint8_t pad0[32];
  /* Line 1, written by the thread. */
  uint32_t done_seq; /* 64: futex; the sequence number of the last finished command */
  int32_t result;    /* 68: KVM_RUN's return value, or -errno */
  uint32_t state;    /* 72: futex; STATE_* */
  int32_t tid;       /* 76: the thread's id */
  int32_t timer;     /* 80: its POSIX timer (kernel id), -1 if none */
  uint32_t runs;     /* 84: KVM_RUN calls, for tests */
  uint32_t waiters;  /* 88: snapvm_run_wait_hot calls in progress (they read guest memory) */
  uint8_t pad1[36];
  /* Line 2, written by the owner before the thread starts (guest_* also while the thread is idle). */
  int32_t vcpu_fd;       /* 128 */
  int32_t vm_fd;         /* 132 */
  int32_t owner_pidfd;   /* 136: -1 if none */
  int32_t owner_tid;     /* 140: 0: never an orphan (the owner is the main thread) */
  int32_t pid;           /* 144 */
  int32_t signo;         /* 148 */
  uint32_t heartbeat_ms; /* 152: 0: none */
  uint32_t pad2;         /* 156 */
  uint64_t run_addr;     /* 160: the kvm_run mapping */
  uint64_t run_size;     /* 168 */
  uint64_t guest_addr;   /* 176: the guest memory range, 0 if none */
  uint64_t guest_size;   /* 184 */
  uint64_t pthread;      /* 192: the thread's pthread_t (written right after it starts) */
  uint64_t detach;       /* 200: address of pthread_detach, or 0 */
  char name[16];         /* 208: thread name */
  uint64_t ring_addr;    /* 224: the vCPU's dirty ring mapping, 0 if none */
  uint64_t ring_size;    /* 232 */
};
_Static_assert(__builtin_offsetof(struct ctrl, done_seq) == 64, "ctrl line 1");
_Static_assert(__builtin_offsetof(struct ctrl, vcpu_fd) == 128, "ctrl line 2");
_Static_assert(__builtin_offsetof(struct ctrl, name) == 208, "ctrl name");
_Static_assert(__builtin_offsetof(struct ctrl, ring_addr) == 224, "ctrl ring");

#define EXPORT __attribute__((visibility("default")))
#define LOAD(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

struct timespec64 {
  int64_t sec, nsec;
};

static int64_t now_ns(void) {
  struct timespec64 t;
  sys3(SYS_clock_gettime, CLOCK_MONOTONIC, &t, 0);
  return t.sec * 1000000000 + t.nsec;
}

static void futex_wait(uint32_t *word, uint32_t value, int64_t timeout_ns) {
  struct timespec64 t = {timeout_ns / 1000000000, timeout_ns % 1000000000};
  sys4(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, timeout_ns > 0 ? &t : 0);
}

static void futex_wake(uint32_t *word) { sys3(SYS_futex, word, FUTEX_WAKE_PRIVATE, 0x7fffffff); }

/* The DS/ES/FS/GS reset of vm/kvm/host_segments.ts, for this thread. */
static void reset_segments(void) {
  uint32_t ds, es, fs, gs;
  __asm__ volatile("movl %%ds, %0" : "=r"(ds));
  __asm__ volatile("movl %%es, %0" : "=r"(es));
  __asm__ volatile("movl %%fs, %0" : "=r"(fs));
  __asm__ volatile("movl %%gs, %0" : "=r"(gs));
  if ((ds | es) & 0xffff) __asm__ volatile("movl %0, %%ds; movl %0, %%es" : : "r"(0) : "memory");
  uint64_t base;
  if (fs & 0xffff) {
    sys3(SYS_arch_prctl, ARCH_GET_FS, &base, 0);
    sys3(SYS_arch_prctl, ARCH_SET_FS, base, 0);
  }
  if (gs & 0xffff) {
    sys3(SYS_arch_prctl, ARCH_GET_GS, &base, 0);
    sys3(SYS_arch_prctl, ARCH_SET_GS, base, 0);
  }
}

/* Consumes a pending `signo` of this thread (it is blocked here, so it can only be pending). */
static void consume_signal(int signo) {
  uint64_t set = 1ull << (signo - 1);
  struct timespec64 zero = {0, 0};
  sys4(SYS_rt_sigtimedwait, &set, 0, &zero, 8);
}

static int owner_gone(struct ctrl *c) {
  if (c->owner_tid == 0) return 0;
  if (c->owner_pidfd >= 0) {
    struct {
      int32_t fd;
      int16_t events, revents;
    } p = {c->owner_pidfd, POLLIN, 0};
    return sys3(SYS_poll, &p, 1, 0) > 0;
  }
  return sys3(SYS_tgkill, c->pid, c->owner_tid, 0) == -ESRCH;
}

/* The call was killed through its interrupt handle (vm/interrupt_handle.ts: running, call seq, kill seq). */
static int killed(struct ctrl *c) {
  volatile int32_t *w = (volatile int32_t *)LOAD(c->call_state);
  return w != 0 && w[0] == 1 && w[2] == w[1];
}

/* Arms the timer for the current deadline (with the heartbeat as its period), or for the heartbeat only. */
static void arm(struct ctrl *c, int64_t deadline) {
  if (c->timer < 0) return;
  int64_t beat = (int64_t)c->heartbeat_ms * 1000000;
  struct timespec64 spec[2] = {{beat / 1000000000, beat % 1000000000}, {0, 0}};
  int flags = 0;
  if (deadline != 0) {
    spec[1].sec = deadline / 1000000000;
    spec[1].nsec = deadline % 1000000000;
    flags = TIMER_ABSTIME;
  } else {
    spec[1] = spec[0];
  }
  sys4(SYS_timer_settime, c->timer, flags, spec, 0);
}

static void close_timer(struct ctrl *c) {
  if (c->timer >= 0) sys3(SYS_timer_delete, c->timer, 0, 0);
  c->timer = -1;
}

/*
 * The owner has gone: give the vCPU and the guest memory back to the kernel and end without being joined.
 * A hot wait the owner started may still read guest memory on another thread (it returns within its time
 * slice): the memory goes only once none is in progress, and waits that start later return at once (the
 * state and the count are sequentially consistent, so one of the two sides always sees the other). The
 * control block stays mapped for them.
 */
static void *orphan(struct ctrl *c) {
  close_timer(c);
  __atomic_store_n(&c->state, STATE_ORPHANING, __ATOMIC_SEQ_CST);
  for (uint32_t w; (w = __atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST)) != 0;) futex_wait(&c->waiters, w, 0);
  if (c->run_addr) sys3(SYS_munmap, c->run_addr, c->run_size, 0);
  if (c->ring_addr) sys3(SYS_munmap, c->ring_addr, c->ring_size, 0);
  if (c->guest_addr) sys3(SYS_munmap, c->guest_addr, c->guest_size, 0);
  sys3(SYS_close, c->vcpu_fd, 0, 0);
  sys3(SYS_close, c->vm_fd, 0, 0);
  if (c->owner_pidfd >= 0) sys3(SYS_close, c->owner_pidfd, 0, 0);
  STORE(c->state, STATE_ORPHANED);
  futex_wake(&c->state);
  if (c->detach) ((int (*)(uint64_t))c->detach)(c->pthread);
  return 0;
}

/* The thread's start routine: `void *(*)(void *)` with the control block. */
EXPORT void *snapvm_run_thread(struct ctrl *c) {
  uint64_t all = ~0ull;
  sys4(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8);
  sys3(SYS_prctl, PR_SET_NAME, c->name, 0);
  c->tid = (int32_t)sys3(SYS_gettid, 0, 0, 0);
  struct {
    uint64_t value;
    int32_t signo, notify, tid, pad;
    uint8_t rest[40];
  } ev = {0, c->signo, SIGEV_THREAD_ID, c->tid, 0, {0}};
  int32_t timer = -1;
  c->timer = sys3(SYS_timer_create, CLOCK_MONOTONIC, &ev, &timer) == 0 ? timer : -1;
  STORE(c->state, STATE_READY);
  futex_wake(&c->state);

  int64_t armed = -1; /* the deadline the timer is armed for; -1: disarmed */
  int64_t wait = (int64_t)c->heartbeat_ms * 1000000;
  uint32_t seen = 0;
  for (;;) {
    uint32_t seq;
    while ((seq = LOAD(c->cmd_seq)) == seen) {
      futex_wait(&c->cmd_seq, seen, wait);
      if (owner_gone(c)) return orphan(c);
    }
    seen = seq;
    uint32_t cmd = LOAD(c->cmd);
    if (cmd == CMD_STOP) break;
    long r = 0;
    if (cmd == CMD_RUN) {
      int64_t deadline = c->deadline_ns;
      if (deadline != armed && (deadline != 0 || c->heartbeat_ms != 0)) arm(c, deadline);
      armed = deadline;
      if (c->flags & FLAG_RESET_SEGMENTS) reset_segments();
      for (;;) {
        /* The timer fires once per deadline: a run started after it has fired must not start at all. */
        if (deadline != 0 && now_ns() >= deadline) {
          r = -EINTR;
          break;
        }
        c->runs++;
        r = sys3(SYS_ioctl, c->vcpu_fd, KVM_RUN, 0);
        if (r != -EINTR && r != -EAGAIN) break;
        consume_signal(c->signo);
        if (owner_gone(c)) return orphan(c);
        if (LOAD(c->kick) || killed(c)) break;
      }
    }
    c->result = (int32_t)r;
    STORE(c->done_seq, seq);
    futex_wake(&c->done_seq);
  }
  close_timer(c);
  if (c->owner_pidfd >= 0) sys3(SYS_close, c->owner_pidfd, 0, 0);
  STORE(c->state, STATE_STOPPED);
  futex_wake(&c->state);
  return 0;
}

/*
 * Waits for a hot guest: until the mailbox word `*mailbox` differs from `seen` (returns 1), the thread has
 * finished command `seq` (2), CLOCK_MONOTONIC passes `deadline_us` (0: none; returns 0), or `slice_us` has
 * passed (3). Spins for `spin_us` first (the guest usually answers within a microsecond or two), then
 * sleeps in growing steps up to 1 ms, still checking the mailbox (the guest cannot wake a futex). Times are
 * in microseconds so that the caller can pass plain numbers. The clock is read only every 64 spins: a
 * clock_gettime system call costs as much as the whole wait for a polling guest.
 */
static int32_t wait_hot(struct ctrl *c, uint32_t *mailbox, uint32_t seen, uint32_t seq, int64_t deadline_us,
                        int64_t slice_us, int64_t spin_us) {
  int64_t deadline = deadline_us * 1000, start = 0, t;
  for (uint32_t i = 1;; i++) {
    if (LOAD(*mailbox) != seen) return 1;
    if (LOAD(c->done_seq) == seq) return 2;
    __builtin_ia32_pause();
    if ((i & 63) == 0) {
      t = now_ns();
      if (start == 0) start = t;
      if (deadline != 0 && t >= deadline) return 0;
      if (t - start >= slice_us * 1000) return 3;
      if (t - start >= spin_us * 1000) break;
    }
  }
  /*
   * The sleeps below are this short only with a small timer slack (the default, 50 µs, would be added to
   * each): when this thread shares a core with the guest's, a sleep is what lets the guest answer.
   */
  sys3(SYS_prctl, PR_SET_TIMERSLACK, 1000, 0);
  for (int64_t step = 5000;; step = step < 1000000 ? step * 2 : step) {
    uint32_t done = LOAD(c->done_seq);
    if (LOAD(*mailbox) != seen) return 1;
    if (done == seq) return 2;
    futex_wait(&c->done_seq, done, step);
    if (LOAD(*mailbox) != seen) return 1;
    if (LOAD(c->done_seq) == seq) return 2;
    t = now_ns();
    if (deadline != 0 && t >= deadline) return 0;
    if (t - start >= slice_us * 1000) return 3;
  }
}

EXPORT int32_t snapvm_run_wait_hot(struct ctrl *c, uint32_t *mailbox, uint32_t seen, uint32_t seq,
                                   int64_t deadline_us, int64_t slice_us, int64_t spin_us) {
  __atomic_add_fetch(&c->waiters, 1, __ATOMIC_SEQ_CST);
  int32_t r = 3; /* an orphaned thread's memory may be gone: report a slice that ended, read nothing */
  if (__atomic_load_n(&c->state, __ATOMIC_SEQ_CST) == STATE_READY) {
    r = wait_hot(c, mailbox, seen, seq, deadline_us, slice_us, spin_us);
  }
  if (__atomic_sub_fetch(&c->waiters, 1, __ATOMIC_SEQ_CST) == 0) futex_wake(&c->waiters);
  return r;
}

/* CLOCK_MONOTONIC in nanoseconds. */
EXPORT int64_t snapvm_run_now(void) { return now_ns(); }

/* The time-stamp counter. */
EXPORT uint64_t snapvm_run_rdtsc(void) { return __builtin_ia32_rdtsc(); }
