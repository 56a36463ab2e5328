// floor.c - the physical floor for snapvm's benchmarks: the same KVM steps snapvm performs, done by a minimal
// C program, so benchmark results can be printed next to what the kernel and the hardware allow.
// Built and run by bench/_floor.ts (gcc -O2); usable by hand:
//
//   floor [all|create|call|mailbox|cold|restore] [runs] [tmpdir]  (defaults: all 200 $TMPDIR-or-/tmp)
//   floor restore [runs] [tmpdir] [size_mib] [pages]          (one size and page count of the restore group)
//   floor evicted [runs] [tmpdir] [size_mib] [pages]          (defaults: 200 $TMPDIR 256 44; not in "all")
//
// Output: "# ..." comment lines, and one machine-readable line per metric (times in microseconds,
// CLOCK_MONOTONIC, after a warm-up, with one idle "keeper" VM + vCPU alive for the whole process):
//   R <metric> n=<runs> med=<us> p90=<us> min=<us>
// Metrics: create, teardown, call, mailbox, cold_<size>, restore_<size>_n<N>, evicted_<size>_p<N> and
// cached_<size>_p<N> (see the mode functions below).
//
// CPU setup as in docs/ABI.md: 4-level identity paging, GDT (kernel code/data, user data 0x2b, user code
// 0x33, busy TSS 0x38 whose I/O bitmap allows only ports 0xE0-0xE3), IDT with 32 CPL0 stubs that report the
// vector on port 0xEF, CS=0x33 (CPL3), RFLAGS=0x2 (IOPL 0). Low memory is the ABI's too (GDT/TSS/IDT page,
// stubs, exception stack, PML4/PDPT/PD, one PT per 2 MiB); the user code page follows the last page table
// instead of sitting at 0x200000, so that a 128 KiB image still fits. The guest touches the same number of
// pages either way.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096ull
#define MIB (1ull << 20)
#define GDT 0x1000ull // GDT @0x1000, TSS @0x1100, IDT @0x1800
#define TSS 0x1100ull
#define TSS_LIMIT (0x67ull + 33) // 104-byte TSS + 32-byte I/O bitmap + 0xFF terminator
#define IDT 0x1800ull
#define STUBS 0x2000ull
#define XSTACK_TOP 0x5000ull // exception stack 0x3000-0x5000 (TSS.RSP0)
#define PML4 0x5000ull
#define PDPT 0x6000ull
#define PD 0x7000ull
#define PT0 0x8000ull // page tables, contiguous, one per 2 MiB: a flat PTE array indexed by gpa / 4 KiB
#define PORT_DONE 0xE0
#define PORT_EXC 0xEF
#define PATTERN 0x5a5a000000000000ull
#define CREATE_SIZE (4 * MIB) // guest memory for `create` and `call`

// Page-table entry bits. A and D are preset so the CPU never writes the page tables.
#define P 1ull
#define RW 2ull
#define US 4ull
#define A 0x20ull
#define D 0x40ull
#define NX (1ull << 63)

// CPL3 guest code, copied to the code page; only relative jumps, so it runs anywhere.
//   floor_ping:  out %eax,$0xE0 in a loop (one KVM_RUN = one exit + re-entry).
//   floor_dirty: write %rax to the first qword of %edx pages from %rsi on, then out; repeat.
//   floor_read:  read the first qword of %edx pages from %rsi on, then out; repeat.
//   floor_mailbox: poll the u32 at (%rsi) (the host's sequence number, last seen in %edx, pause between
//                  reads); copy each new value to 64(%rsi) (the answer, in the next cache line, as in
//                  snapvm's mailbox); on 0xffffffff out instead, then poll on.
__asm__(".pushsection .rodata\n"
        ".globl floor_ping, floor_dirty, floor_read, floor_mailbox, floor_end\n"
        "floor_ping:\n"
        "1:  outl %eax, $0xE0\n"
        "    jmp 1b\n"
        "floor_dirty:\n"
        "2:  mov %rsi, %rdi\n"
        "    mov %edx, %ecx\n"
        "3:  mov %rax, (%rdi)\n"
        "    add $4096, %rdi\n"
        "    dec %ecx\n"
        "    jnz 3b\n"
        "    outl %eax, $0xE0\n"
        "    jmp 2b\n"
        "floor_read:\n"
        "4:  mov %rsi, %rdi\n"
        "    mov %edx, %ecx\n"
        "5:  mov (%rdi), %r8\n"
        "    add $4096, %rdi\n"
        "    dec %ecx\n"
        "    jnz 5b\n"
        "    outl %eax, $0xE0\n"
        "    jmp 4b\n"
        "floor_mailbox:\n"
        "4:  mov (%rsi), %eax\n"
        "    cmp %eax, %edx\n"
        "    jne 5f\n"
        "    pause\n"
        "    jmp 4b\n"
        "5:  mov %eax, %edx\n"
        "    cmp $0xffffffff, %eax\n"
        "    je 6f\n"
        "    mov %eax, 64(%rsi)\n"
        "    jmp 4b\n"
        "6:  outl %eax, $0xE0\n"
        "    jmp 4b\n"
        "floor_end:\n"
        ".popsection\n");
extern const uint8_t floor_ping[], floor_dirty[], floor_read[], floor_mailbox[], floor_end[];

struct vm {
  int vm, cpu, fd;
  size_t size;
  uint8_t *mem;
  struct kvm_run *run;
};

static int kvm;
static size_t run_size;
static struct kvm_sregs sregs; // template: a fresh vCPU's sregs (from the keeper) + the ABI's setup
static int runs = 200, warm;

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what) {
  int r = ioctl(fd, req, arg);
  if (r < 0) die(what);
  return r;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void report(const char *metric, double *v, int n) {
  qsort(v, n, sizeof *v, cmp_double);
  double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  int i90 = (int)((n * 9 + 9) / 10) - 1; // nearest-rank 90th percentile
  printf("R %s n=%d med=%.2f p90=%.2f min=%.2f\n", metric, n, med, v[i90 < 0 ? 0 : i90], v[0]);
  fflush(stdout);
}

static const char *size_name(size_t size) {
  static char buf[32];
  if (size % MIB) snprintf(buf, sizeof buf, "%zuk", size >> 10);
  else snprintf(buf, sizeof buf, "%zum", size >> 20);
  return buf;
}

static uint64_t code_gpa(size_t size) { return PT0 + ((size + 2 * MIB - 1) / (2 * MIB)) * PG; }
static uint64_t data_gpa(size_t size) { return code_gpa(size) + PG; }

static void put64(uint8_t *m, uint64_t off, uint64_t v) { memcpy(m + off, &v, 8); }

// Writes descriptor tables, exception stubs, page tables and guest code into zeroed memory `m`.
static void build_image(uint8_t *m, size_t size) {
  put64(m, GDT + 0x08, 0x00af9b000000ffffull); // kernel code64: P, DPL0, exec/read, L, G
  put64(m, GDT + 0x10, 0x00cf93000000ffffull); // kernel data: P, DPL0, read/write, DB, G
  put64(m, GDT + 0x28, 0x00cff3000000ffffull); // 0x2b user data: P, DPL3, read/write, DB, G
  put64(m, GDT + 0x30, 0x00affb000000ffffull); // 0x33 user code64: P, DPL3, exec/read, L, G
  put64(m, GDT + 0x38, TSS_LIMIT | TSS << 16 | 0x8bull << 40); // 0x38 busy 64-bit TSS (base < 16 MiB)
  put64(m, TSS + 4, XSTACK_TOP);                               // RSP0
  uint16_t iopb = 104;
  memcpy(m + TSS + 102, &iopb, 2);
  memset(m + TSS + 104, 0xff, 33);
  // Ports 0xE0-0xE3 allowed, as ABI.md says. The CPU checks one bit per byte accessed, so with this bitmap
  // a 32-bit out works on 0xE0 only (outl to 0xE1-0xE3 raises #GP); the floor only uses 0xE0.
  m[TSS + 104 + PORT_DONE / 8] = 0xf0;
  for (int v = 0; v < 32; v++) {
    uint64_t stub = STUBS + 16 * v, lo = (stub & 0xffff) | 0x08ull << 16 | (v == 3 ? 0xeeull : 0x8eull) << 40;
    put64(m, IDT + 16 * v, lo | (stub >> 16 & 0xffff) << 48); // interrupt gate; DPL3 only for int3
    uint8_t *s = m + stub;
    if (!((1u << v) & 0x60227d00u)) *s++ = 0x6a, *s++ = 0; // push $0 unless the CPU pushes an error code
    *s++ = 0xb8, memcpy(s, &v, 4), s += 4;                   // mov $v, %eax
    *s++ = 0xe7, *s++ = PORT_EXC, *s++ = 0xf4;               // out %eax, $0xEF; hlt
  }
  uint64_t npt = (code_gpa(size) - PT0) / PG, *pte = (uint64_t *)(m + PT0);
  put64(m, PML4, PDPT | P | RW | US | A);
  put64(m, PDPT, PD | P | RW | US | A);
  for (uint64_t i = 0; i < npt; i++) put64(m, PD + 8 * i, (PT0 + i * PG) | P | RW | US | A);
  pte[GDT / PG] = GDT | P | RW | A | D | NX; // supervisor only
  pte[STUBS / PG] = STUBS | P | A;           // supervisor RX
  for (uint64_t a = 0x3000; a < XSTACK_TOP; a += PG) pte[a / PG] = a | P | RW | A | D | NX;
  pte[code_gpa(size) / PG] = code_gpa(size) | P | US | A; // user RX
  for (uint64_t a = data_gpa(size); a < size; a += PG) pte[a / PG] = a | P | RW | US | A | D | NX;
  memcpy(m + code_gpa(size), floor_ping, floor_end - floor_ping);
}

// Keeper VM + vCPU, alive for the whole process (see docs: avoids a kernel static-key flip per VM), and the
// sregs template, taken once from the keeper's fresh vCPU so no VM needs its own KVM_GET_SREGS.
static void init_kvm(void) {
  if ((kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("KVM API version");
  run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
  int keeper = xioctl(kvm, KVM_CREATE_VM, 0, "keeper KVM_CREATE_VM");
  int kcpu = xioctl(keeper, KVM_CREATE_VCPU, 0, "keeper KVM_CREATE_VCPU");
  xioctl(kcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  struct kvm_segment code = {.limit = 0xffffffff, .selector = 0x33, .type = 11, .present = 1, .dpl = 3,
                             .s = 1, .l = 1, .g = 1};
  struct kvm_segment data = {.limit = 0xffffffff, .selector = 0x2b, .type = 3, .present = 1, .dpl = 3,
                             .db = 1, .s = 1, .g = 1};
  struct kvm_segment tr = {.base = TSS, .limit = TSS_LIMIT, .selector = 0x38, .type = 11, .present = 1};
  sregs.cs = code, sregs.ss = data, sregs.tr = tr;
  data.selector = 0;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = data;
  sregs.gdt.base = GDT, sregs.gdt.limit = 9 * 8 - 1;
  sregs.idt.base = IDT, sregs.idt.limit = 32 * 16 - 1;
  sregs.cr0 = 0x80050033, sregs.cr3 = PML4, sregs.cr4 = 0x620, sregs.efer = 0xd00;
  // keeper and kcpu are deliberately never closed
}

// KVM_CREATE_VM, guest memory (anonymous + image, or a MAP_PRIVATE file mapping with MADV_RANDOM), memslot,
// vCPU, kvm_run mapping, KVM_SET_SREGS.
static void vm_open(struct vm *v, size_t size, int fd, uint32_t slot_flags) {
  v->size = size, v->fd = fd;
  v->vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
  v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_PRIVATE, fd, 0);
  if (v->mem == MAP_FAILED) die("mmap guest memory");
  if (fd < 0) build_image(v->mem, size);
  else if (madvise(v->mem, size, MADV_RANDOM)) die("madvise");
  struct kvm_userspace_memory_region slot = {.slot = 0, .flags = slot_flags, .guest_phys_addr = 0,
                                             .memory_size = size, .userspace_addr = (uint64_t)v->mem};
  xioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &slot, "KVM_SET_USER_MEMORY_REGION");
  v->cpu = xioctl(v->vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
  v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->cpu, 0);
  if (v->run == MAP_FAILED) die("mmap kvm_run");
  xioctl(v->cpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
}

// One KVM_RUN; the guest must stop at a 32-bit out to port 0xE0.
static void vm_run(struct vm *v) {
  xioctl(v->cpu, KVM_RUN, 0, "KVM_RUN");
  struct kvm_run *r = v->run;
  if (r->exit_reason == KVM_EXIT_IO && r->io.direction == KVM_EXIT_IO_OUT && r->io.size == 4 &&
      r->io.port == PORT_DONE)
    return;
  struct kvm_regs regs;
  xioctl(v->cpu, KVM_GET_REGS, &regs, "KVM_GET_REGS");
  fprintf(stderr, "floor: unexpected exit %u (port 0x%x, rax 0x%llx, rip 0x%llx)", r->exit_reason,
          r->exit_reason == KVM_EXIT_IO ? r->io.port : 0, regs.rax, regs.rip);
  if (r->exit_reason == KVM_EXIT_IO && r->io.port == PORT_EXC) {
    uint64_t frame[6]; // error code, RIP, CS, RFLAGS, RSP, SS
    memcpy(frame, v->mem + XSTACK_TOP - 48, sizeof frame);
    fprintf(stderr, ": guest exception, error 0x%lx at rip 0x%lx", frame[0], frame[1]);
  }
  fprintf(stderr, "\n");
  exit(1);
}

// KVM_SET_REGS at `entry` (offset in the guest code) and the first KVM_RUN.
static void vm_enter(struct vm *v, const uint8_t *entry, uint64_t rsi, uint64_t rdx) {
  struct kvm_regs regs = {.rip = code_gpa(v->size) + (entry - floor_ping), .rflags = 0x2, .rsp = v->size,
                          .rax = 0x1234, .rsi = rsi, .rdx = rdx};
  xioctl(v->cpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
  vm_run(v);
}

static void vm_close(struct vm *v) {
  if (munmap(v->run, run_size) || munmap(v->mem, v->size)) die("munmap");
  if (close(v->cpu) || close(v->vm) || (v->fd >= 0 && close(v->fd))) die("close");
}

// create: nothing -> first out (anonymous memory); teardown: munmap + close vCPU + close VM.
static void mode_create(void) {
  double *c = calloc(runs, sizeof *c), *t = calloc(runs, sizeof *t);
  for (int i = -warm; i < runs; i++) {
    struct vm v;
    double t0 = now_us();
    vm_open(&v, CREATE_SIZE, -1, 0);
    vm_enter(&v, floor_ping, 0, 0);
    double t1 = now_us();
    vm_close(&v);
    double t2 = now_us();
    if (i >= 0) c[i] = t1 - t0, t[i] = t2 - t1;
  }
  report("create", c, runs), report("teardown", t, runs);
  free(c), free(t);
}

// call: one KVM_RUN resuming a guest stopped at `out` until its next `out` (exit + re-entry).
static void mode_call(void) {
  int n = runs * 5;
  double *c = calloc(n, sizeof *c);
  struct vm v;
  vm_open(&v, CREATE_SIZE, -1, 0);
  vm_enter(&v, floor_ping, 0, 0);
  for (int i = -warm * 5; i < n; i++) {
    double t0 = now_us();
    vm_run(&v);
    if (i >= 0) c[i] = now_us() - t0;
  }
  vm_close(&v);
  report("call", c, n);
  free(c);
}

// The vCPU thread of `mailbox`: one KVM_RUN for the whole measurement (the guest polls; it exits only at
// the end).
static void *mailbox_vcpu(void *arg) {
  vm_run(arg);
  return NULL;
}

// mailbox: the round trip of a hot call without any VM exit. The guest (CPL3, on a vCPU thread of its own,
// inside one KVM_RUN) polls a word in guest memory; this thread writes the next sequence number there and
// spins until the guest has copied it into the answer word, one cache line further. This is what a hot
// snapvm call does, minus encoding the request and decoding the result.
static void mode_mailbox(void) {
  int n = runs * 5;
  double *c = calloc(n, sizeof *c);
  struct vm v;
  vm_open(&v, CREATE_SIZE, -1, 0);
  struct kvm_regs regs = {.rip = code_gpa(v.size) + (floor_mailbox - floor_ping), .rflags = 0x2,
                          .rsp = v.size, .rsi = data_gpa(v.size), .rdx = 0};
  xioctl(v.cpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
  uint32_t *host = (uint32_t *)(v.mem + data_gpa(v.size)), *guest = host + 16;
  pthread_t thread;
  if (pthread_create(&thread, NULL, mailbox_vcpu, &v)) die("pthread_create");
  for (int i = -warm * 5; i < n; i++) {
    uint32_t seq = (uint32_t)(i + warm * 5 + 1);
    double t0 = now_us();
    __atomic_store_n(host, seq, __ATOMIC_RELEASE);
    while (__atomic_load_n(guest, __ATOMIC_ACQUIRE) != seq) __builtin_ia32_pause();
    if (i >= 0) c[i] = now_us() - t0;
  }
  __atomic_store_n(host, 0xffffffffu, __ATOMIC_RELEASE);
  if (pthread_join(thread, NULL)) die("pthread_join");
  vm_close(&v);
  report("mailbox", c, n);
  free(c);
}

static void write_image_file(const char *path, size_t size) {
  uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die("mmap image");
  build_image(m, size);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die(path);
  for (size_t off = 0; off < size;) { // real zeros, not holes: a snapshot file is not sparse
    ssize_t w = write(fd, m + off, size - off);
    if (w <= 0) die("write image");
    off += w;
  }
  if (fsync(fd) || close(fd) || munmap(m, size)) die("fsync image");
}

// cold_<size>: open the image file -> first out (file in the page cache); teardown not timed.
static void mode_cold(const char *tmpdir) {
  static const size_t sizes[] = {128 << 10, 8 * MIB, 64 * MIB, 256 * MIB};
  double *c = calloc(runs, sizeof *c);
  for (int s = 0; s < 4; s++) {
    char path[4096], metric[64];
    snprintf(path, sizeof path, "%s/floor-%d-%s.img", tmpdir, (int)getpid(), size_name(sizes[s]));
    write_image_file(path, sizes[s]);
    for (int i = -warm; i < runs; i++) {
      struct vm v;
      double t0 = now_us();
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) die(path);
      vm_open(&v, sizes[s], fd, 0);
      vm_enter(&v, floor_ping, 0, 0);
      if (i >= 0) c[i] = now_us() - t0;
      vm_close(&v);
    }
    unlink(path);
    snprintf(metric, sizeof metric, "cold_%s", size_name(sizes[s]));
    report(metric, c, runs);
  }
  free(c);
}

// restore_<size>_n<N>: the guest dirtied N pages of a KVM_MEM_LOG_DIRTY_PAGES slot; time KVM_GET_DIRTY_LOG
// + copying exactly the dirty pages back from a pristine copy. The guest run itself is not timed.
// With only_size / only_pages (0: all), just that size and page count.
static void mode_restore(size_t only_size, int only_pages) {
  static const size_t sizes[] = {8 * MIB, 64 * MIB, 256 * MIB};
  static const int counts[] = {1, 1000};
  double *c = calloc(runs, sizeof *c);
  for (int s = 0; s < 3; s++) {
    if (only_size && sizes[s] != only_size) continue;
    size_t size = sizes[s], npages = size / PG, words = (npages + 63) / 64;
    uint8_t *pristine = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *bitmap = calloc(words, 8);
    if (pristine == MAP_FAILED || !bitmap) die("alloc");
    memset(pristine, 0, size); // populate every page, as a loaded snapshot would be
    build_image(pristine, size);
    for (uint64_t a = data_gpa(size); a < size; a += PG) put64(pristine, a, PATTERN | a / PG);
    for (int k = 0; k < 2; k++) {
      int n = counts[k];
      if (only_pages && n != only_pages) continue;
      struct vm v;
      vm_open(&v, size, -1, KVM_MEM_LOG_DIRTY_PAGES);
      memcpy(v.mem, pristine, size);
      struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = bitmap};
      xioctl(v.vm, KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG"); // start from a clean log
      for (int i = -warm; i < runs; i++) {
        if (i == -warm) vm_enter(&v, floor_dirty, data_gpa(size), n);
        else vm_run(&v);
        double t0 = now_us();
        xioctl(v.vm, KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
        size_t copied = 0;
        for (size_t w = 0; w < words; w++)
          for (uint64_t b = bitmap[w]; b; b &= b - 1) {
            size_t off = (w * 64 + __builtin_ctzll(b)) * PG;
            memcpy(v.mem + off, pristine + off, PG);
            copied++;
          }
        double t1 = now_us();
        if (i >= 0) c[i] = t1 - t0;
        if (copied != (size_t)n || memcmp(v.mem + data_gpa(size), pristine + data_gpa(size), 8)) {
          fprintf(stderr, "floor: restore copied %zu pages, expected %d\n", copied, n);
          exit(1);
        }
      }
      vm_close(&v);
      char metric[64];
      snprintf(metric, sizeof metric, "restore_%s_n%d", size_name(size), n);
      report(metric, c, runs);
    }
    munmap(pristine, size);
    free(bitmap);
  }
  free(c);
}

// evicted_<size>_p<N>: the image file's pages dropped from the page cache (posix_fadvise DONTNEED, untimed)
// before each run, then open -> first out with guest memory mmap(MAP_PRIVATE) of the file and MADV_RANDOM;
// the guest reads one qword from each of N consecutive data pages, so the run reads from disk the N pages,
// the page tables and descriptor tables the CPU walks and the code page, one 4 KiB read per fault.
// cached_<size>_p<N>: the same with the file in the page cache.
static void mode_evicted(const char *tmpdir, size_t size, int pages) {
  char path[4096], metric[64];
  snprintf(path, sizeof path, "%s/floor-%d-evicted-%s.img", tmpdir, (int)getpid(), size_name(size));
  if ((size_t)pages * PG > size - data_gpa(size)) {
    fprintf(stderr, "floor: %d pages do not fit a %s image\n", pages, size_name(size));
    exit(2);
  }
  write_image_file(path, size);
  double *c = calloc(runs, sizeof *c);
  for (int evict = 1; evict >= 0; evict--) {
    for (int i = -warm; i < runs; i++) {
      if (evict) {
        int efd = open(path, O_RDONLY | O_CLOEXEC);
        if (efd < 0 || posix_fadvise(efd, 0, 0, POSIX_FADV_DONTNEED) || close(efd)) die("posix_fadvise");
      }
      struct vm v;
      double t0 = now_us();
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) die(path);
      vm_open(&v, size, fd, 0);
      vm_enter(&v, floor_read, data_gpa(size), pages);
      if (i >= 0) c[i] = now_us() - t0;
      vm_close(&v);
    }
    snprintf(metric, sizeof metric, "%s_%s_p%d", evict ? "evicted" : "cached", size_name(size), pages);
    report(metric, c, runs);
  }
  unlink(path);
  free(c);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "all";
  if (argc > 2) runs = atoi(argv[2]);
  const char *tmpdir = argc > 3 ? argv[3] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  int all = !strcmp(mode, "all");
  int evicted = !strcmp(mode, "evicted");
  // evicted: defaults 256 MiB, 44 pages; restore: every size and count unless given.
  size_t size_arg = (argc > 4 ? (size_t)atoi(argv[4]) : evicted ? 256 : 0) * MIB;
  int pages_arg = argc > 5 ? atoi(argv[5]) : evicted ? 44 : 0;
  if (runs < 1 || (evicted && (size_arg < 4 * MIB || pages_arg < 1)) ||
      (!all && strcmp(mode, "create") && strcmp(mode, "call") && strcmp(mode, "mailbox") &&
       strcmp(mode, "cold") && strcmp(mode, "restore") && strcmp(mode, "evicted"))) {
    fprintf(stderr, "usage: floor [all|create|call|mailbox|cold|restore] [runs] [tmpdir]\n"
                    "       floor restore [runs] [tmpdir] [size_mib] [pages]\n"
                    "       floor evicted [runs] [tmpdir] [size_mib] [pages]\n");
    return 2;
  }
  warm = runs / 10 > 10 ? runs / 10 : 10;
  init_kvm();
  printf("# floor: runs=%d warmup=%d keeper=1 create_size=%s clock=CLOCK_MONOTONIC unit=us\n", runs, warm,
         size_name(CREATE_SIZE));
  if (all || !strcmp(mode, "create")) mode_create();
  if (all || !strcmp(mode, "call")) mode_call();
  if (all || !strcmp(mode, "mailbox")) mode_mailbox();
  if (all || !strcmp(mode, "cold")) mode_cold(tmpdir);
  if (all || !strcmp(mode, "restore")) mode_restore(size_arg, pages_arg);
  if (!strcmp(mode, "evicted")) mode_evicted(tmpdir, size_arg, pages_arg);
  return 0;
}
