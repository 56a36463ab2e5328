/*
 * snapvm's BLAKE3 kernel: the official BLAKE3 C implementation plus three entry points that let one input
 * be hashed on several threads. build_kernel.ts compiles this file together with the C sources from
 * Debian's librust-blake3-dev and links everything into one flat, position-independent image without libc
 * and without relocations, which _native.ts copies into executable memory and calls through Deno's FFI.
 *
 * How the parallel hash works (BLAKE3 spec, section 2.1, "Tree Hashing"): the input is split into 1 KiB
 * chunks that form a left-complete binary tree; a parent node's chaining value (CV) is the compression of its
 * two children's CVs, and only the topmost compression carries the ROOT flag. A subtree whose chunk count is
 * a power of two and which starts at a multiple of that count is a node of every larger tree, and so is the
 * rightmost run of chunks after the last such subtree. So the input is cut into equal "leaves" of 2^k chunks
 * (the last one may be shorter); threads compute the leaves' CVs (snapvm_blake3_work), and
 * snapvm_blake3_root joins them with the same left-complete splitting, which gives the digest a single
 * thread would compute.
 */

/* The library's own helpers for whole subtrees (compress_subtree_to_parent_node, chunk_state_*) are static,
 * so the library is compiled into this translation unit instead of being linked against. */
#include "blake3.c"

/* The image has no libc. GCC may still emit calls to these for struct copies and __builtin_popcountll; they
 * are compiled here, with the image's calling convention. build_kernel.ts passes
 * -fno-tree-loop-distribute-patterns so that these loops are not turned back into calls to themselves. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int __popcountdi2(uint64_t x) {
  int n = 0;
  for (; x != 0; x &= x - 1) n++;
  return n;
}

/* One parallel hash. Every field is 8 bytes, so the layout is the same for the SysV and Windows ABIs; it is
 * written from JavaScript at the offsets given by JOB_FIELDS in _native.ts. */
struct snapvm_blake3_job {
  const uint8_t *input;   /* the whole input */
  uint64_t input_len;     /* its length in bytes */
  uint64_t leaf_len;      /* bytes per leaf: a power of two, at least BLAKE3_CHUNK_LEN */
  uint64_t leaf_count;    /* ceil(input_len / leaf_len), at least 2 */
  uint64_t next_leaf;     /* the next leaf to take; threads advance it atomically */
  uint8_t *cvs;           /* leaf_count * 32 bytes: the leaves' chaining values */
};

_Static_assert(sizeof(struct snapvm_blake3_job) == 48, "job layout is shared with _native.ts");

/* The chaining value of the tree node that covers `input` (a whole node: see the comment at the top), whose
 * first chunk has index `chunk_counter`. Never the root: the caller only uses it for inputs of 2+ leaves. */
static void node_cv(const uint8_t *input, size_t len, uint64_t chunk_counter, uint8_t out[BLAKE3_OUT_LEN]) {
  if (len <= BLAKE3_CHUNK_LEN) {
    /* A single chunk, possibly partial: the last leaf can be this short. */
    blake3_chunk_state chunk;
    chunk_state_init(&chunk, IV, 0);
    chunk.chunk_counter = chunk_counter;
    chunk_state_update(&chunk, input, len);
    output_t output = chunk_state_output(&chunk);
    output_chaining_value(&output, out);
    return;
  }
  uint8_t parent_block[BLAKE3_BLOCK_LEN];
  compress_subtree_to_parent_node(input, len, IV, chunk_counter, 0, parent_block);
  output_t output = parent_output(parent_block, IV, 0);
  output_chaining_value(&output, out);
}

/* Computes leaves until none is left. It is the start routine of every helper thread (a pthread start
 * routine in the SysV image, a Windows thread procedure in the Win64 one: both take one pointer and their
 * return value is ignored), and the calling thread runs it too. Leaves are taken one at a time, so the
 * threads stay busy until the end even when one of them starts late or is descheduled. */
void *snapvm_blake3_work(struct snapvm_blake3_job *job) {
  for (;;) {
    uint64_t leaf = __atomic_fetch_add(&job->next_leaf, 1, __ATOMIC_RELAXED);
    if (leaf >= job->leaf_count) return 0;
    uint64_t start = leaf * job->leaf_len;
    uint64_t rest = job->input_len - start;
    uint64_t len = rest < job->leaf_len ? rest : job->leaf_len;
    node_cv(job->input + start, (size_t)len, start / BLAKE3_CHUNK_LEN, job->cvs + leaf * BLAKE3_OUT_LEN);
  }
}

/* Joins `count` (>= 2) consecutive leaf CVs into their parent's CV. All leaves but the last are the same
 * power-of-two size, so the left child always holds the largest power of two of leaves below `count`: the
 * same split as BLAKE3's left_len() on bytes. The depth is log2(count), at most 64 frames. */
static void join_cvs(const uint8_t *cvs, uint64_t count, uint8_t flags, uint8_t out[BLAKE3_OUT_LEN]) {
  uint8_t parent_block[BLAKE3_BLOCK_LEN];
  uint64_t left = 1;
  while (left * 2 < count) left *= 2;
  if (left == 1) {
    memcpy(parent_block, cvs, BLAKE3_OUT_LEN);
  } else {
    join_cvs(cvs, left, 0, parent_block);
  }
  if (count - left == 1) {
    memcpy(parent_block + BLAKE3_OUT_LEN, cvs + left * BLAKE3_OUT_LEN, BLAKE3_OUT_LEN);
  } else {
    join_cvs(cvs + left * BLAKE3_OUT_LEN, count - left, 0, parent_block + BLAKE3_OUT_LEN);
  }
  uint32_t cv[8];
  memcpy(cv, IV, BLAKE3_KEY_LEN);
  blake3_compress_in_place(cv, parent_block, BLAKE3_BLOCK_LEN, 0, PARENT | flags);
  store_cv_words(out, cv);
}

/* The digest from the leaves' CVs of a finished job: the root node gets the ROOT flag, and its first 32
 * output bytes are the compressed CV words (BLAKE3 spec, section 2.6, with output block counter 0).
 * Returns 0, or -1 (writing nothing) for fewer than two leaves, whose root is not a parent node. */
int snapvm_blake3_root(const uint8_t *cvs, uint64_t count, uint8_t out[BLAKE3_OUT_LEN]) {
  if (count < 2) return -1;
  join_cvs(cvs, count, ROOT, out);
  return 0;
}

/* The whole hash on the calling thread, with the library's own incremental hasher. */
void snapvm_blake3_hash(const uint8_t *input, uint64_t len, uint8_t out[BLAKE3_OUT_LEN]) {
  blake3_hasher hasher;
  blake3_hasher_init(&hasher);
  blake3_hasher_update(&hasher, input, (size_t)len);
  blake3_hasher_finalize(&hasher, out, BLAKE3_OUT_LEN);
}
