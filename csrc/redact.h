/*
 * redact.h -- cutting the token and secret values out of text that may end
 * up in an error, a log line or a terminal (redact.c).
 */
#ifndef MP_REDACT_H
#define MP_REDACT_H

#include <stddef.h>

#include "compat.h"

MP_BEGIN_INTERNAL

/* Shorter values would match ordinary text, and cutting them would garble
 * every message (a one-letter test token turned each 't' into [token]).
 * Exported as core.MIN_CUT_TOKEN and core.MIN_CUT_SECRET. */
#define MP_MIN_CUT_TOKEN 8
#define MP_MIN_CUT_SECRET 4

/* One value to cut out, and what stands in its place; where cut values
 * meet or overlap, one label stands for them all: the highest rank's. */
typedef struct mp_needle {
  const char *s;
  size_t n;
  const char *label;
  unsigned char rank; /* 1 or more */
} mp_needle;

/* Push s with every byte of every occurrence of each needle cut, each run of
 * cut bytes replaced by one label, so no part of a value is left behind:
 * not the tail of a secret that starts with another, nor of one that
 * overlaps another's end.  The needles' bytes must stay referenced while
 * this allocates. */
void mp_cut(lua_State *L, const char *s, size_t n, mp_needle *needles, int k);

/* Adds redact, MIN_CUT_TOKEN and MIN_CUT_SECRET to the module table on top of
 * the stack. */
void mp_open_redact(lua_State *L);

/* Push `text` (at index idx) cut of `token` (NULL: none), of the strings in
 * the arrays at index tokens and secrets (0: none): what core.redact and
 * session:redact do. */
int mp_redact(lua_State *L, int idx, const char *token, size_t tlen, int tokens, int secrets);

MP_END_INTERNAL

#endif /* MP_REDACT_H */
