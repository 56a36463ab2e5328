/*
 * The C library functions gcc may emit calls to, and a small snprintf. The mem* functions use string
 * instructions in inline asm so gcc cannot turn their loops back into calls to themselves.
 */
#include "internal.h"

void *memcpy(void *dst, const void *src, size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if ((uintptr_t)dst - (uintptr_t)src >= n) return memcpy(dst, src, n); /* forward copy is safe */
  /* dst overlaps the tail of src: copy backwards (DF must be clear again for the SysV ABI). */
  void *d = (char *)dst + n - 1;
  const void *s = (const char *)src + n - 1;
  __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] - y[i];
  }
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n) {
  for (; n; n--, a++, b++) {
    if (*a != *b || !*a) return (unsigned char)*a - (unsigned char)*b;
  }
  return 0;
}

char *strcpy(char *dst, const char *src) {
  char *d = dst;
  while ((*d++ = *src++)) {}
  return dst;
}

char *strchr(const char *s, int c) {
  for (;; s++) {
    if (*s == (char)c) return (char *)s;
    if (!*s) return NULL;
  }
}

/* ---- sv_vsnprintf ---- */

struct out {
  char *buf;
  size_t cap, len; /* len counts everything, also what did not fit */
};

static void emit(struct out *o, char ch) {
  if (o->len + 1 < o->cap) o->buf[o->len] = ch;
  o->len++;
}

static void pad(struct out *o, char ch, int n) {
  while (n-- > 0) emit(o, ch);
}

/* Formats one number with sign/prefix, width and precision like printf. */
static void emit_num(struct out *o, uint64_t v, bool neg, unsigned base, bool upper, const char *prefix, int width,
                     int prec, bool left, bool zero) {
  char digits[24];
  int n = 0;
  const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    digits[n++] = set[v % base];
    v /= base;
  } while (v);
  if (prec == 0 && n == 1 && digits[0] == '0') n = 0; /* "%.0d" of 0 prints nothing */
  int zeros = prec > n ? prec - n : 0;
  int plen = (int)strlen(prefix) + (neg ? 1 : 0);
  int total = plen + zeros + n;
  if (zero && !left && prec < 0 && width > total) zeros += width - total, total = width;
  if (!left) pad(o, ' ', width - total);
  if (neg) emit(o, '-');
  while (*prefix) emit(o, *prefix++);
  pad(o, '0', zeros);
  while (n) emit(o, digits[--n]);
  if (left) pad(o, ' ', width - total);
}

int sv_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap) {
  struct out o = {buf, cap, 0};
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      emit(&o, *fmt);
      continue;
    }
    bool left = false, zero = false;
    int width = 0, prec = -1, lng = 0;
    for (;; fmt++) {
      if (fmt[1] == '-') left = true;
      else if (fmt[1] == '0') zero = true;
      else break;
    }
    fmt++;
    if (*fmt == '*') {
      width = va_arg(ap, int);
      if (width < 0) left = true, width = -width;
      fmt++;
    } else {
      while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    }
    if (*fmt == '.') {
      fmt++;
      prec = 0;
      if (*fmt == '*') {
        prec = va_arg(ap, int);
        fmt++;
      } else {
        while (*fmt >= '0' && *fmt <= '9') prec = prec * 10 + (*fmt++ - '0');
      }
    }
    /* Length modifiers: all 64-bit types are `long` on x86-64; h/hh promote to int anyway. */
    for (; *fmt == 'l' || *fmt == 'h' || *fmt == 'z' || *fmt == 'j' || *fmt == 't'; fmt++) {
      if (*fmt != 'h') lng = 1;
    }
    if (!*fmt) break;
    switch (*fmt) {
    case 'd': case 'i': {
      int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
      uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
      emit_num(&o, m, v < 0, 10, false, "", width, prec, left, zero);
      break;
    }
    case 'u': case 'x': case 'X': case 'o': {
      uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
      unsigned base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;
      emit_num(&o, v, false, base, *fmt == 'X', "", width, prec, left, zero);
      break;
    }
    case 'p':
      emit_num(&o, (uintptr_t)va_arg(ap, void *), false, 16, false, "0x", width, prec, left, zero);
      break;
    case 'c':
      if (!left) pad(&o, ' ', width - 1);
      emit(&o, (char)va_arg(ap, int));
      if (left) pad(&o, ' ', width - 1);
      break;
    case 's': {
      const char *s = va_arg(ap, const char *);
      if (!s) s = "(null)";
      int n = 0;
      while ((prec < 0 || n < prec) && s[n]) n++;
      if (!left) pad(&o, ' ', width - n);
      for (int i = 0; i < n; i++) emit(&o, s[i]);
      if (left) pad(&o, ' ', width - n);
      break;
    }
    default: /* "%%" and unknown conversions print the character */
      emit(&o, *fmt);
    }
  }
  if (cap) buf[o.len < cap ? o.len : cap - 1] = 0;
  return (int)o.len;
}

int sv_snprintf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = sv_vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return r;
}
