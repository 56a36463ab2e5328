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
 * interruption (the timer of an earlier deadline, a stray signal) re-enters the guest at once.
 *
 * Orphans: a run thread of a Worker does not watch its owner. The Worker's reaper (below) does: when the
 * owner thread has gone, the reaper stops each run thread the way the owner would (a kick, then CMD_STOP),
 * joins it, and only then releases the vCPU, the guest memory and the control block, which are the
 * reaper's to release (one owner: a run thread never closes or unmaps anything but its own timer).
 *
 * The reaper: one plain thread per Worker, started by ffi/linux/reaper.ts with the Worker's first native
 * resource (the main thread has none: its end is the process's). It blocks until its owner thread has gone
 * (a pidfd of the thread, readable once it exits; `tgkill(pid, tid, 0)` every `poll_ms` where pidfds of
 * threads are not supported) and then releases everything its table still lists: it stops and joins the run
 * threads, closes the fds, deletes the POSIX timers, waits `grace_ms` when there were run threads (see
 * reap()), unmaps the mappings, and finally closes its pidfd and unmaps its own table. This code is mapped
 * once per process and never unmapped (ffi/linux/shared_code.ts), so a thread may return into it after
 * everything else is gone.
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

struct ctrl {
  /* Line 0, written by the owner (by the reaper once the owner has gone). */
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
  uint32_t waiters;  /* 88: futex; snapvm_run_wait_hot calls in progress (they read guest memory) */
  uint8_t pad1[36];
  /* Line 2, written by the owner before the thread starts. */
  int32_t vcpu_fd; /* 128 */
  int32_t signo;   /* 132 */
  char name[16];   /* 136: thread name */
};
_Static_assert(__builtin_offsetof(struct ctrl, done_seq) == 64, "ctrl line 1");
_Static_assert(__builtin_offsetof(struct ctrl, waiters) == 88, "ctrl waiters");
_Static_assert(__builtin_offsetof(struct ctrl, vcpu_fd) == 128, "ctrl line 2");
_Static_assert(__builtin_offsetof(struct ctrl, name) == 136, "ctrl name");

/*
 * The reaper's table: one header and the entries (vm/kvm/run_thread.ts is not its owner: ffi/linux/reaper.ts
 * declares this layout, REAPER and OWNED there, and these asserts mirror it). Only the owner writes it while
 * it lives; the reaper reads it only after the owner has gone.
 */
#define OWNED_FREE 0
#define OWNED_FD 1         /* fd: an fd to close */
#define OWNED_MAPPING 2    /* a, b: address and size of a mapping to unmap */
#define OWNED_TIMER 3      /* a: a POSIX timer's kernel id */
#define OWNED_RUN_THREAD 4 /* a: a run thread's control block, b: its pthread_t (to join) */

struct owned {
  uint32_t kind; /* 0 */
  int32_t fd;    /* 4 */
  uint64_t a;    /* 8 */
  uint64_t b;    /* 16 */
};
_Static_assert(sizeof(struct owned) == 24, "owned entry");

struct reaper {
  int32_t owner_tid;   /* 0 */
  int32_t owner_pidfd; /* 4: -1: none, poll with tgkill */
  int32_t pid;         /* 8 */
  uint32_t poll_ms;    /* 12: how often to look without a pidfd */
  uint32_t grace_ms;   /* 16: see reap() */
  uint32_t used;       /* 20: entries [0, used) may be in use */
  uint64_t size;       /* 24: bytes of this table's mapping (the reaper unmaps it last) */
  uint64_t join;       /* 32: address of pthread_join */
  uint64_t detach;     /* 40: address of pthread_detach */
  uint64_t pthread;    /* 48: the reaper's own pthread_t: it detaches itself when it ends */
  uint8_t pad0[8];
  char name[16]; /* 64: thread name */
  uint8_t pad1[48];
  struct owned entries[]; /* 128 */
};
_Static_assert(__builtin_offsetof(struct reaper, size) == 24, "reaper size");
_Static_assert(__builtin_offsetof(struct reaper, pthread) == 48, "reaper pthread");
_Static_assert(__builtin_offsetof(struct reaper, name) == 64, "reaper name");
_Static_assert(__builtin_offsetof(struct reaper, entries) == 128, "reaper entries");

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

/* The call was killed through its interrupt handle (vm/interrupt_handle.ts: running, call seq, kill seq). */
static int killed(struct ctrl *c) {
  volatile int32_t *w = (volatile int32_t *)LOAD(c->call_state);
  return w != 0 && w[0] == 1 && w[2] == w[1];
}

/* Arms the timer, one shot, for the current deadline (an absolute CLOCK_MONOTONIC time). */
static void arm(struct ctrl *c, int64_t deadline) {
  if (c->timer < 0) return;
  struct timespec64 spec[2] = {{0, 0}, {deadline / 1000000000, deadline % 1000000000}};
  sys4(SYS_timer_settime, c->timer, TIMER_ABSTIME, spec, 0);
}

static void close_timer(struct ctrl *c) {
  if (c->timer >= 0) sys3(SYS_timer_delete, c->timer, 0, 0);
  c->timer = -1;
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

  int64_t armed = 0; /* the deadline the timer was last armed for */
  uint32_t seen = 0;
  for (;;) {
    uint32_t seq;
    while ((seq = LOAD(c->cmd_seq)) == seen) futex_wait(&c->cmd_seq, seen, 0);
    seen = seq;
    uint32_t cmd = LOAD(c->cmd);
    if (cmd == CMD_STOP) break;
    long r = 0;
    if (cmd == CMD_RUN) {
      int64_t deadline = c->deadline_ns;
      /* A timer armed for an earlier deadline may still fire: a stray signal, which re-enters the guest. */
      if (deadline != 0 && deadline != armed) arm(c, deadline);
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
        if (LOAD(c->kick) || killed(c)) break;
      }
    }
    c->result = (int32_t)r;
    STORE(c->done_seq, seq);
    futex_wake(&c->done_seq);
  }
  close_timer(c);
  /* Sequentially consistent: see snapvm_run_wait_hot. */
  __atomic_store_n(&c->state, STATE_STOPPED, __ATOMIC_SEQ_CST);
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

/*
 * A hot wait runs on a thread of the owner's blocking pool, which may outlive the owner. It reads guest
 * memory only while the run thread is READY: the count and the state are sequentially consistent, so when
 * the reaper finds no wait in progress after the thread has STOPPED, any wait that starts later sees STOPPED
 * and returns without reading anything but the control block (see reap() for how long that stays mapped).
 */
EXPORT int32_t snapvm_run_wait_hot(struct ctrl *c, uint32_t *mailbox, uint32_t seen, uint32_t seq,
                                   int64_t deadline_us, int64_t slice_us, int64_t spin_us) {
  __atomic_add_fetch(&c->waiters, 1, __ATOMIC_SEQ_CST);
  int32_t r = 3; /* a stopped thread's memory may be gone (its owner too): report a slice that ended */
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

/* Sleeps `ms` milliseconds (a futex wait nobody wakes). */
static void sleep_ms(uint32_t ms) {
  uint32_t never = 0;
  futex_wait(&never, 0, (int64_t)ms * 1000000);
}

/* Blocks until the owner thread has gone. */
static void await_owner(struct reaper *r) {
  if (r->owner_pidfd >= 0) {
    struct {
      int32_t fd;
      int16_t events, revents;
    } p = {r->owner_pidfd, POLLIN, 0};
    while (sys3(SYS_poll, &p, 1, -1) <= 0) {
    }
    return;
  }
  /* A thread id is reused only after the kernel has gone through pid_max others (4M by default). */
  while (sys3(SYS_tgkill, r->pid, r->owner_tid, 0) != -ESRCH) sleep_ms(r->poll_ms);
}

/*
 * Stops a run thread of the dead owner as the owner would (it only ever ends at CMD_STOP, and its owner
 * removes it from the table before posting one, so it is alive and not yet told to stop), and joins it.
 */
static void stop_run_thread(struct reaper *r, struct ctrl *c, uint64_t pthread) {
  for (uint32_t s; (s = LOAD(c->state)) == STATE_STARTING;) futex_wait(&c->state, s, 0);
  STORE(c->call_state, 0); /* the dead owner's call words went with its heap */
  STORE(c->kick, 1);
  /* Out of KVM_RUN now, or at once at the next one (the signal stays pending outside it). */
  sys3(SYS_tgkill, r->pid, c->tid, c->signo);
  STORE(c->cmd, CMD_STOP);
  __atomic_add_fetch(&c->cmd_seq, 1, __ATOMIC_SEQ_CST);
  futex_wake(&c->cmd_seq);
  ((int (*)(uint64_t, void *))r->join)(pthread, 0);
  /* STOPPED now: hot waits that start from here on read no guest memory; let those in progress end. */
  for (uint32_t w; (w = __atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST)) != 0;) futex_wait(&c->waiters, w, 0);
}

/*
 * Releases everything the table lists. Run threads first (they may be in KVM_RUN on a vCPU below), then fds
 * and timers, then mappings. When there were run threads, the mappings (their control blocks among them)
 * go only `grace_ms` later: a hot wait the owner issued just before it died may not have started yet on the
 * blocking pool (one already dequeued still runs; it starts within microseconds, the owner's teardown alone
 * takes milliseconds), and it reads the control block first.
 */
static void reap(struct reaper *r) {
  uint32_t used = r->used, max = (uint32_t)((r->size - sizeof(struct reaper)) / sizeof(struct owned));
  if (used > max) used = max;
  int threads = 0;
  for (uint32_t i = 0; i < used; i++) {
    struct owned *e = &r->entries[i];
    if (e->kind == OWNED_RUN_THREAD) {
      stop_run_thread(r, (struct ctrl *)e->a, e->b);
      threads++;
    }
  }
  for (uint32_t i = 0; i < used; i++) {
    struct owned *e = &r->entries[i];
    if (e->kind == OWNED_FD) sys3(SYS_close, e->fd, 0, 0);
    if (e->kind == OWNED_TIMER) sys3(SYS_timer_delete, e->a, 0, 0);
  }
  if (threads) sleep_ms(r->grace_ms);
  for (uint32_t i = 0; i < used; i++) {
    struct owned *e = &r->entries[i];
    if (e->kind == OWNED_MAPPING) sys3(SYS_munmap, e->a, e->b, 0);
  }
}

/* The reaper's start routine: `void *(*)(void *)` with its table. */
EXPORT void *snapvm_reaper(struct reaper *r) {
  uint64_t all = ~0ull;
  sys4(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8);
  sys3(SYS_prctl, PR_SET_NAME, r->name, 0);
  await_owner(r);
  reap(r);
  int32_t pidfd = r->owner_pidfd;
  uint64_t size = r->size, self = r->pthread;
  int (*detach)(uint64_t) = (int (*)(uint64_t))r->detach;
  if (pidfd >= 0) sys3(SYS_close, pidfd, 0, 0);
  sys3(SYS_munmap, r, size, 0);
  detach(self); /* nobody joins it: its stack goes back to the C library when it returns */
  return 0;
}
