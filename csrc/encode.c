/*
 * encode.c -- JSON text for strings and numbers.  Structure (brackets, commas,
 * keys) is written by the walker; this file owns the byte-level rules.
 */
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

/* --- UTF-8: the one check every string passes before it is written --- */

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/* Length of the well-formed sequence at s (Unicode table 3-7), 0 if none:
 * overlongs, surrogates and code points past U+10FFFF are refused. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  if (c < 0xC2 || c > 0xF4) return 0;
  if (c < 0xE0) return n >= 2 && is_cont(s[1]) ? 2 : 0;
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c < 0xF0) return n >= 3 && s[1] >= lo && s[1] <= hi && is_cont(s[2]) ? 3 : 0;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  return n >= 4 && s[1] >= lo && s[1] <= hi && is_cont(s[2]) && is_cont(s[3]) ? 4 : 0;
}

int mp_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, len;
  while (i < n) {
    uint64_t v;
    /* ASCII eight bytes at a time: most strings never leave this loop. */
    while (i + 8 <= n && (memcpy(&v, s + i, 8), (v & 0x8080808080808080ULL) == 0)) i += 8;
    while (i < n && s[i] < 0x80) i++;
    if (i == n) return 1;
    if ((len = utf8_seq(s + i, n - i)) == 0) return 0;
    i += len;
  }
  return 1;
}

/* --- strings --- */

#define NON_ASCII_16 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'

/* What a byte needs: 0 nothing (copy it), 'x' a UTF-8 check (non-ASCII), else
 * the character after the backslash ('u' meaning \u00XX). */
static const char escape_of[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    ['"'] = '"', ['\\'] = '\\',
    [0x80] = NON_ASCII_16, NON_ASCII_16, NON_ASCII_16, NON_ASCII_16,
    NON_ASCII_16, NON_ASCII_16, NON_ASCII_16, NON_ASCII_16,
};

static int put_escape(mp_buf *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char e[6] = {'\\', escape_of[c], '0', '0', hex[c >> 4], hex[c & 15]};
  return mp_buf_add(b, e, e[1] == 'u' ? 6 : 2);
}

/* The rest of a string that needs escapes or holds non-ASCII: runs of bytes
 * to copy (well-formed UTF-8 sequences included) between escapes. */
static int string_tail(mp_buf *b, const unsigned char *p, const unsigned char *end) {
  size_t len;
  while (p < end) {
    const unsigned char *run = p;
    for (;;) {
      while (p < end && !escape_of[*p]) p++;
      if (p == end || *p < 0x80) break;
      if ((len = utf8_seq(p, (size_t)(end - p))) == 0) return -1;
      p += len;
    }
    if (!mp_buf_add(b, (const char *)run, (size_t)(p - run))) return 0;
    if (p < end && !put_escape(b, *p++)) return 0;
  }
  return mp_buf_add(b, "\"", 1);
}

/* Whether none of eight bytes needs attention: no control byte, quote,
 * backslash or non-ASCII byte (SWAR: a set high bit flags a byte; borrows may
 * flag a plain one too, which only sends the caller to the bytewise loop). */
static int plain8(uint64_t v) {
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');
  uint64_t flags = ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | v;
  return (flags & high) == 0;
}

/* Copy the plain leading bytes of p to d a word at a time, never reading
 * past p + n: whole words, then one last word (or two half-words) that
 * overlap what was already checked.  Returns how many bytes were copied. */
static size_t copy_plain(char *d, const unsigned char *p, size_t n) {
  uint64_t v;
  uint32_t head, tail;
  size_t i = 0;
  if (n < 4) return 0;
  if (n < 8) {
    memcpy(&head, p, 4);
    memcpy(&tail, p + n - 4, 4);
    if (!plain8(((uint64_t)head << 32) | tail)) return 0;
    memcpy(d, &head, 4);
    memcpy(d + n - 4, &tail, 4);
    return n;
  }
  for (; i + 8 <= n; i += 8) {
    memcpy(&v, p + i, 8);
    if (!plain8(v)) return i;
    memcpy(d + i, &v, 8);
  }
  if (i < n) {
    memcpy(&v, p + n - 8, 8);
    if (!plain8(v)) return i;
    memcpy(d + n - 8, &v, 8);
  }
  return n;
}

int mp_json_string(mp_buf *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i;
  char *d;
  if (!mp_buf_grow(b, n + 2)) return 0;
  d = b->data + b->len;
  *d++ = '"';
  /* Plain ASCII, the common case: copied into the room reserved above. */
  i = copy_plain(d, p, n);
  while (i < n && !escape_of[p[i]]) {
    d[i] = (char)p[i];
    i++;
  }
  if (i == n) {
    d[n] = '"';
    b->len += n + 2;
    return 1;
  }
  b->len += i + 1;
  return string_tail(b, p + i, p + n);
}

/* Digits by hand: exact for every value, and much cheaper than snprintf. */
static int put_llong(mp_buf *b, long long v) {
  char tmp[24], *p = tmp + sizeof tmp;
  /* Negate in unsigned arithmetic so LLONG_MIN does not overflow. */
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    *--p = (char)('0' + (int)(u % 10));
    u /= 10;
  } while (u != 0);
  if (v < 0) *--p = '-';
  return mp_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

int mp_json_integer(mp_buf *b, lua_Integer i) { return put_llong(b, (long long)i); }

/* printf and strtod follow LC_NUMERIC; JSON wants '.', whatever the host set. */
static size_t fix_decimal_point(char *s, size_t n) {
  const char *dp = localeconv()->decimal_point;
  size_t dl;
  char *at;
  if (dp == NULL || (dp[0] == '.' && dp[1] == '\0') || dp[0] == '\0') return n;
  at = strstr(s, dp);
  if (at == NULL) return n;
  dl = strlen(dp);
  *at = '.';
  memmove(at + 1, at + dl, n - (size_t)(at - s) - dl + 1);
  return n - dl + 1;
}

static int put_shortest(mp_buf *b, double d) {
  char tmp[64];
  int prec, n = 0;
  for (prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break; /* %.17g always round-trips */
  }
  return mp_buf_add(b, tmp, fix_decimal_point(tmp, (size_t)n));
}

int mp_json_number(mp_buf *b, lua_Number num) {
  double d = (double)num;
  /* Integral doubles below 2^53 are exact as integers: no fraction, no
   * exponent, and no printf (LuaJIT and 5.1 send every count this way). */
  if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d) {
    if (d == 0 && signbit(d)) return mp_buf_add(b, "-0.0", 4);
    return put_llong(b, (long long)d);
  }
  return put_shortest(b, d);
}
