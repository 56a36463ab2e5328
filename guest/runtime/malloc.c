/*
 * First-fit allocator over the heap region from the boot record: an address-ordered free list,
 * coalesced on free. Every block starts with a 16-byte header; a magic word tied to the block's address
 * catches frees of pointers malloc never returned and double frees (both abort the guest), so a bad free
 * cannot silently corrupt the free list.
 */
#include "internal.h"

#define HDR 16u
#define MIN_BLOCK 32u /* header + free-list link, rounded to the 16-byte alignment */
#define MAGIC_USED 0x5356616c6c6f6375ull
#define MAGIC_FREE 0x5356667265656c69ull

struct block {
  uint64_t size;  /* whole block, header included; multiple of 16 */
  uint64_t magic; /* MAGIC_USED or MAGIC_FREE, xor the block address */
  struct block *next; /* free blocks only */
};

static uintptr_t g_lo, g_hi; /* usable heap range, 16-byte aligned */
static struct block *g_free; /* free list sorted by address */

static uint64_t magic(const struct block *b, uint64_t kind) { return kind ^ (uintptr_t)b; }

void sv_heap_init(uint64_t base, uint64_t size) {
  g_lo = (base + 15) & ~(uint64_t)15;
  g_hi = (base + size) & ~(uint64_t)15;
  g_free = NULL;
  if (g_hi < g_lo) g_hi = g_lo; /* keeps g_hi - g_lo meaningful in malloc */
  if (g_hi - g_lo < MIN_BLOCK) return; /* no usable heap: malloc returns NULL */
  g_free = (struct block *)g_lo;
  g_free->size = g_hi - g_lo;
  g_free->magic = magic(g_free, MAGIC_FREE);
  g_free->next = NULL;
}

void *malloc(size_t n) {
  if (n > g_hi - g_lo) return NULL; /* also keeps the rounding below from overflowing */
  uint64_t need = (n + HDR + 15) & ~(uint64_t)15;
  if (need < MIN_BLOCK) need = MIN_BLOCK;
  for (struct block **link = &g_free; *link; link = &(*link)->next) {
    struct block *b = *link;
    if (b->size < need) continue;
    if (b->size - need >= MIN_BLOCK) {
      /* Carve the tail, so the free block keeps its place in the list. */
      b->size -= need;
      b = (struct block *)((uintptr_t)b + b->size);
      b->size = need;
    } else {
      *link = b->next;
    }
    b->magic = magic(b, MAGIC_USED);
    return (char *)b + HDR;
  }
  return NULL;
}

/* The header of a pointer malloc returned, or an abort. */
static struct block *owner(void *p) {
  uintptr_t a = (uintptr_t)p;
  struct block *b = (struct block *)(a - HDR);
  if (a & 15 || a < g_lo + HDR || a >= g_hi || b->magic != magic(b, MAGIC_USED) || b->size < MIN_BLOCK ||
      b->size > g_hi - (uintptr_t)b)
    sv_panic("free/realloc: invalid pointer (not from malloc, already freed, or heap overwritten)");
  return b;
}

void free(void *p) {
  if (!p) return;
  struct block *b = owner(p);
  struct block *prev = NULL, *next = g_free;
  while (next && next < b) prev = next, next = next->next;
  b->magic = magic(b, MAGIC_FREE);
  b->next = next;
  if (next && (uintptr_t)b + b->size == (uintptr_t)next) { /* merge with the following block */
    b->size += next->size;
    b->next = next->next;
    next->magic = 0;
  }
  if (prev && (uintptr_t)prev + prev->size == (uintptr_t)b) { /* merge into the preceding block */
    prev->size += b->size;
    prev->next = b->next;
    b->magic = 0;
  } else if (prev) {
    prev->next = b;
  } else {
    g_free = b;
  }
}

void *calloc(size_t n, size_t size) {
  if (size && n > (size_t)-1 / size) return NULL;
  void *p = malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *realloc(void *p, size_t n) {
  if (!p) return malloc(n);
  if (n == 0) {
    free(p);
    return NULL;
  }
  struct block *b = owner(p);
  if (b->size - HDR >= n) return p;
  void *q = malloc(n);
  if (!q) return NULL; /* p stays valid, as C requires */
  memcpy(q, p, b->size - HDR);
  free(p);
  return q;
}

size_t sv_heap_available(void) {
  uint64_t best = 0;
  for (struct block *b = g_free; b; b = b->next) {
    if (b->size > best) best = b->size;
  }
  return best ? best - HDR : 0;
}
