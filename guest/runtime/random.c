/*
 * Clone-aware randomness (docs/ABI.md, "Info page"). A sandbox made from a snapshot starts with the RNG
 * state the snapshot holds, so every clone would produce the same numbers; the host writes a new generation
 * and fresh entropy into the info page for every clone and after every restore, and sv_random() reseeds
 * from that entropy whenever it sees a generation it has not seeded from yet.
 */
#include "internal.h"

struct sv_info {
  uint64_t generation;
  uint64_t seed[4];
};
#define SV_INFO ((const volatile struct sv_info *)SV_INFO_ADDR)

static uint64_t g_seeded_generation; /* 0: never seeded (the host never writes generation 0) */
static uint64_t g_state[4];

uint64_t sv_generation(void) { return SV_INFO->generation; }

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sv_random(void) {
  uint64_t generation = SV_INFO->generation;
  if (generation != g_seeded_generation) {
    for (int i = 0; i < 4; i++) g_state[i] = SV_INFO->seed[i];
    if ((g_state[0] | g_state[1] | g_state[2] | g_state[3]) == 0) g_state[0] = 1;
    g_seeded_generation = generation;
  }
  /* xoshiro256** (Blackman and Vigna, public domain). */
  uint64_t *s = g_state;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

int rand(void) { return (int)(sv_random() >> 33); }
