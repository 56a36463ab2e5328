// Restore's page work in one call each: built into a small shared object (build_restore_pages.ts) that
// restore_pages.ts loads with Deno.dlopen, so each call is an FFI fast call (~20 ns) instead of the dozen
// JavaScript steps, objects and pages it replaces. No libc: copies and fills are `rep movsq` / `rep stosq`.
//
// Every address and size comes from restore_pages.ts, which checks them against the mappings they belong
// to before it builds a plan; this code only bounds its loops by the plan. Nothing here reads memory the
// guest controls: the dirty bitmap and the dirty ring are written by the host kernel.
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))
#define PAGE 4096u

// struct kvm_dirty_gfn (linux/kvm.h): flags, slot, offset (the page within the slot).
struct dirty_gfn {
  uint32_t flags;
  uint32_t slot;
  uint64_t offset;
};
#define KVM_DIRTY_GFN_F_DIRTY 1u
#define KVM_DIRTY_GFN_F_RESET 2u

// The ring state (a u64 array); vm/kvm/backend.ts writes these indexes (RING there).
enum {
  R_RING,      // host address of the vCPU's dirty ring
  R_ENTRIES,   // entries in the ring (a power of two)
  R_FETCH,     // entries consumed so far (in and out)
  R_SLOT,      // the memslot whose pages are recorded
  R_PAGES,     // bits in the bitmap (pages beyond are not recorded)
  R_COLLECTED, // entries collected and not yet reset (in and out)
  R_WORDS,
};

// Moves the dirty ring's new entries into `bitmap` and marks them collected (KVM_DIRTY_GFN_F_RESET), as
// KVM's documentation of KVM_CAP_DIRTY_LOG_RING asks: the flags are read with acquire ordering (KVM
// publishes them last) and written with release ordering. Returns the number of entries collected.
static uint64_t collect(uint64_t *ring, uint64_t *bitmap) {
  struct dirty_gfn *entries = (struct dirty_gfn *)ring[R_RING];
  const uint64_t mask = ring[R_ENTRIES] - 1, slot = ring[R_SLOT], pages = ring[R_PAGES];
  uint64_t fetch = ring[R_FETCH], collected = 0;
  for (;;) {
    struct dirty_gfn *e = &entries[fetch & mask];
    if ((__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY) == 0) break;
    uint64_t page = e->offset;
    if (e->slot == slot && page < pages) bitmap[page / 64] |= 1ull << (page % 64);
    __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
    fetch++;
    collected++;
  }
  ring[R_FETCH] = fetch;
  ring[R_COLLECTED] += collected;
  return collected;
}

// The collection alone (the backend's own, before KVM_RESET_DIRTY_RINGS or when the ring is full).
EXPORT uint64_t snapvm_collect_dirty_ring(uint64_t *ring, uint64_t *bitmap) {
  return collect(ring, bitmap);
}

// The plan (a u64 array); restore_pages.ts writes these indexes (PLAN there).
enum {
  P_BITMAP_WORDS,   // u64 words in the bitmap
  P_PERSISTENT,     // host address of guest-physical 0
  P_PERSISTENT_END, // pages of the persistent region
  P_SYSTEM,         // host address of the system area's source (a snapshot's rebuilt system area)
  P_SYSTEM_END,     // pages [0, P_SYSTEM_END) come from P_SYSTEM, the rest from P_BLOB
  P_BLOB,           // host address of the snapshot blob
  P_SCRATCH,        // host address of the scratch region's first page
  P_SCRATCH_FIRST,  // its page number (guest-physical / 4 KiB)
  P_SCRATCH_END,    // one past its last page; equal to P_SCRATCH_FIRST to leave scratch alone
  P_CLEAR_A,        // then zero [P_CLEAR_A, +P_CLEAR_A_LEN) bytes and the same for B (the I/O buffers' parts
  P_CLEAR_A_LEN,    // the host wrote, which the dirty log does not see)
  P_CLEAR_B,
  P_CLEAR_B_LEN,
  P_WRITE_TO,       // and last copy P_WRITE_LEN bytes from P_WRITE_FROM to P_WRITE_TO (a new generation
  P_WRITE_FROM,     // into the info page); lengths may be 0
  P_WRITE_LEN,
  P_STAGE_TO,       // then copy P_STAGE_LEN bytes from P_STAGE_FROM to P_STAGE_TO (the vCPU's entry registers
  P_STAGE_FROM,     // into kvm_run) and OR P_FLAGS into the u32 at P_FLAGS_AT (kvm_dirty_regs), unless
  P_STAGE_LEN,      // P_FLAGS_AT is 0
  P_FLAGS_AT,
  P_FLAGS,
  P_WORDS,
};

static inline void copy_pages(uint64_t to, uint64_t from, uint64_t pages) {
  uint64_t n = pages * (PAGE / 8);
  __asm__ volatile("rep movsq" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

static inline void zero_pages(uint64_t to, uint64_t pages) {
  uint64_t n = pages * (PAGE / 8);
  __asm__ volatile("rep stosq" : "+D"(to), "+c"(n) : "a"(0ull) : "memory");
}

static inline void copy_bytes(uint64_t to, uint64_t from, uint64_t n) {
  __asm__ volatile("rep movsb" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

static inline void zero_bytes(uint64_t to, uint64_t n) {
  __asm__ volatile("rep stosb" : "+D"(to), "+c"(n) : "a"(0) : "memory");
}

// What a run of pages is handed to: copy back (persistent) or zero (scratch).
struct pages {
  uint64_t persistent, system, system_end, blob; // copy: destination base and the two sources
  uint64_t scratch, scratch_first;               // zero: the scratch region's address and first page
  uint64_t copied;
};

static inline void copy_run(struct pages *p, uint64_t first, uint64_t end) {
  uint64_t from = first < p->system_end ? p->system : p->blob;
  copy_pages(p->persistent + first * PAGE, from + first * PAGE, end - first);
  p->copied += end - first;
}

static inline void zero_run(struct pages *p, uint64_t first, uint64_t end) {
  zero_pages(p->scratch + (first - p->scratch_first) * PAGE, end - first);
}

// Calls run(p, first, end) for each run of consecutive set bits within [from, to), split at `split`;
// pages past the bitmap's end are clean. Always inlined, so `run` is a direct call.
static inline __attribute__((always_inline)) void for_each_run(
    const uint64_t *bitmap, uint64_t words, uint64_t from, uint64_t to, uint64_t split,
    void (*run)(struct pages *, uint64_t, uint64_t), struct pages *p) {
  if (to > words * 64) to = words * 64;
  uint64_t start = UINT64_MAX; // the open run's first page
  for (uint64_t w = from / 64; w * 64 < to; w++) {
    uint64_t bits = bitmap[w];
    if (bits == 0 && start == UINT64_MAX) continue; // clean word, no open run
    for (uint64_t b = 0; b < 64; b++) {
      uint64_t page = w * 64 + b;
      if (page >= to) break;
      if (page < from) continue;
      int set = (bits >> b) & 1;
      if (start != UINT64_MAX && (!set || page == split)) {
        run(p, start, page);
        start = UINT64_MAX;
      }
      if (set && start == UINT64_MAX) start = page;
      if (start == UINT64_MAX && (bits >> b) == 0) break; // the rest of the word is clean
    }
  }
  if (start != UINT64_MAX) run(p, start, to);
}

// First collects the dirty ring `ring` into `bitmap` (unless its R_ENTRIES is 0), then copies back every
// persistent page set in `bitmap` (from the system area's source below P_SYSTEM_END, from the blob above),
// zeroes every scratch page set there, then the two byte ranges to clear, makes the one small copy of the
// plan, and stages the vCPU's entry registers. Returns the number of pages copied.
EXPORT uint64_t snapvm_restore_pages(const uint64_t *plan, uint64_t *bitmap, uint64_t *ring) {
  if (ring[R_ENTRIES] != 0) collect(ring, bitmap);
  struct pages p = {
      .persistent = plan[P_PERSISTENT],
      .system = plan[P_SYSTEM],
      .system_end = plan[P_SYSTEM_END],
      .blob = plan[P_BLOB],
      .scratch = plan[P_SCRATCH],
      .scratch_first = plan[P_SCRATCH_FIRST],
      .copied = 0,
  };
  const uint64_t words = plan[P_BITMAP_WORDS];
  for_each_run(bitmap, words, 0, plan[P_PERSISTENT_END], p.system_end, copy_run, &p);
  for_each_run(bitmap, words, p.scratch_first, plan[P_SCRATCH_END], UINT64_MAX, zero_run, &p);
  zero_bytes(plan[P_CLEAR_A], plan[P_CLEAR_A_LEN]);
  zero_bytes(plan[P_CLEAR_B], plan[P_CLEAR_B_LEN]);
  copy_bytes(plan[P_WRITE_TO], plan[P_WRITE_FROM], plan[P_WRITE_LEN]);
  if (plan[P_FLAGS_AT] != 0) {
    copy_bytes(plan[P_STAGE_TO], plan[P_STAGE_FROM], plan[P_STAGE_LEN]);
    // After the registers: KVM reads them at the next KVM_RUN on this thread, after this call returns.
    *(volatile uint32_t *)plan[P_FLAGS_AT] |= (uint32_t)plan[P_FLAGS];
  }
  return p.copied;
}

