/*
 * Runs the Windows (Microsoft x64 ABI) BLAKE3 kernel image on Linux, so that its machine code is tested here:
 * GCC calls a function pointer declared ms_abi with the Windows convention (arguments in rcx, rdx, r8, r9,
 * 32 bytes of shadow space, xmm6-15 preserved), exactly as Deno's FFI does on Windows.
 *
 * usage: harness IMAGE CODE_BYTES MAPPED_BYTES HASH WORK ROOT INPUT THREADS LEAF_BYTES
 * prints the digest from snapvm_blake3_hash, then (when the input is longer than one leaf) the one from the
 * parallel entry points, one per line.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

typedef void (__attribute__((ms_abi)) *hash_fn)(const uint8_t *, uint64_t, uint8_t *);
typedef void *(__attribute__((ms_abi)) *work_fn)(void *);
typedef int (__attribute__((ms_abi)) *root_fn)(const uint8_t *, uint64_t, uint8_t *);

static work_fn work;

/* pthread start routines are SysV; this one calls into the image with the Windows convention. */
static void *start(void *job) { return work(job); }

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc(*len ? *len : 1);
  if (fread(data, 1, *len, f) != *len) { perror(path); exit(2); }
  fclose(f);
  return data;
}

static void print_hex(const uint8_t *digest) {
  for (int i = 0; i < 32; i++) printf("%02x", digest[i]);
  printf("\n");
}

int main(int argc, char **argv) {
  if (argc != 10) { fprintf(stderr, "usage: see the comment at the top\n"); return 2; }
  size_t image_len, input_len;
  uint8_t *image = read_file(argv[1], &image_len);
  size_t code_bytes = strtoul(argv[2], 0, 0), mapped_bytes = strtoul(argv[3], 0, 0);
  uint8_t *base = mmap(0, mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) { perror("mmap"); return 2; }
  for (size_t i = 0; i < image_len; i++) base[i] = image[i];
  if (mprotect(base, code_bytes, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); return 2; }
  hash_fn hash = (hash_fn)(base + strtoul(argv[4], 0, 0));
  work = (work_fn)(base + strtoul(argv[5], 0, 0));
  root_fn root = (root_fn)(base + strtoul(argv[6], 0, 0));
  uint8_t *input = read_file(argv[7], &input_len);
  int threads = atoi(argv[8]);
  uint64_t leaf = strtoull(argv[9], 0, 0);

  uint8_t digest[32];
  hash(input, input_len, digest);
  print_hex(digest);

  /* The parallel entry points need two leaves or more (with one, the root is not a parent node). */
  if (input_len <= leaf) return 0;

  /* struct snapvm_blake3_job of _kernel.c */
  uint64_t count = (input_len + leaf - 1) / leaf;
  uint8_t *cvs = malloc(count * 32);
  uint64_t job[6] = {(uint64_t)(uintptr_t)input, input_len, leaf, count, 0, (uint64_t)(uintptr_t)cvs};
  pthread_t ids[64];
  int started = 0;
  for (; started < threads - 1 && started < 64; started++) {
    if (pthread_create(&ids[started], 0, start, job) != 0) break;
  }
  work(job);
  for (int i = 0; i < started; i++) pthread_join(ids[i], 0);
  if (root(cvs, count, digest) != 0) { fprintf(stderr, "root refused %llu leaves\n", (unsigned long long)count); return 1; }
  print_hex(digest);
  return 0;
}
