/*
 * redact.c -- the one place where the token and secret values are cut out
 * of text: error answers (transport.c), the strings an error object carries
 * and log lines (response.lua through session:redact), and the CLI.
 *
 *   core.redact(text [, token [, secrets]]) -> text
 *     token:   cut as "[token]" when MIN_CUT_TOKEN bytes or more (or an
 *              array of such strings)
 *     secrets: an array; each string of MIN_CUT_SECRET bytes or more is cut
 *              as "[secret]"
 */
#include <string.h>

#include "redact.h"

/* The first n-byte occurrence of k in s[0..len), or NULL. */
static const char *find_bytes(const char *s, size_t len, const char *k, size_t n) {
  const char *end = s + len, *p = s;
  while ((size_t)(end - p) >= n && (p = (const char *)memchr(p, k[0], (size_t)(end - p - n) + 1)) != NULL) {
    if (memcmp(p, k, n) == 0) return p;
    p++;
  }
  return NULL;
}

/* Mark in cover[] every byte of every occurrence of every needle, the
 * highest rank winning; returns cover (a GC-owned userdata left on the
 * stack) or NULL when nothing matched (then nothing was pushed).
 * Occurrences may overlap each other and themselves: cutting one value after
 * another, or the longest at each position, leaves the tail of a value that
 * overlaps the end of another. */
static unsigned char *cover_matches(lua_State *L, const char *s, size_t n, const mp_needle *nd, int k) {
  unsigned char *cover = NULL;
  const char *p, *hit;
  size_t j;
  int t;
  for (t = 0; t < k; t++) {
    for (p = s; (hit = find_bytes(p, n - (size_t)(p - s), nd[t].s, nd[t].n)) != NULL; p = hit + 1) {
      if (cover == NULL) {
        cover = (unsigned char *)mp_newuserdata(L, n);
        memset(cover, 0, n);
      }
      for (j = 0; j < nd[t].n; j++)
        if (cover[hit - s + j] < nd[t].rank) cover[hit - s + j] = nd[t].rank;
    }
  }
  return cover;
}

static const char *label_of(const mp_needle *nd, int k, unsigned char rank) {
  int t;
  for (t = 0; t < k; t++)
    if (nd[t].rank == rank) return nd[t].label;
  return "[redacted]";
}

void mp_cut(lua_State *L, const char *s, size_t n, mp_needle *needles, int k) {
  unsigned char *cover = cover_matches(L, s, n, needles, k);
  size_t i = 0, from = 0;
  luaL_Buffer b;
  if (cover == NULL) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_buffinit(L, &b);
  while (i < n) {
    unsigned char rank = 0;
    if (cover[i] == 0) {
      i++;
      continue;
    }
    luaL_addlstring(&b, s + from, i - from);
    for (; i < n && cover[i] != 0; i++)
      if (cover[i] > rank) rank = cover[i];
    luaL_addstring(&b, label_of(needles, k, rank)); /* one label for a run of cut bytes */
    from = i;
  }
  luaL_addlstring(&b, s + from, n - from);
  luaL_pushresult(&b);
  lua_remove(L, -2); /* the cover */
}

/* Needles for the strings of the array at index t, of min bytes or more,
 * from nd[k]; returns the new k.  Each string is pushed on the stack before
 * its pointer is kept: a finalizer run by an allocation later may empty the
 * caller's table, and the strings must outlive it. */
static int add_needles(lua_State *L, int t, mp_needle *nd, int k, size_t min, const char *label, unsigned char rank) {
  int i, count = (int)mp_rawlen(L, t);
  size_t len;
  luaL_checkstack(L, count + 4, "redacting");
  for (i = 1; i <= count; i++) {
    lua_rawgeti(L, t, i);
    if (lua_type(L, -1) != LUA_TSTRING) continue; /* stays on the stack, harmless */
    nd[k].s = lua_tolstring(L, -1, &len);
    nd[k].n = len, nd[k].label = label, nd[k].rank = rank;
    if (len >= min) k++;
  }
  return k;
}

/* The needle array is a userdata, so an error half-way leaks nothing. */
int mp_redact(lua_State *L, int idx, const char *token, size_t tlen, int tokens, int secrets) {
  size_t n;
  const char *text = luaL_checklstring(L, idx, &n);
  size_t count = 1 + (tokens ? mp_rawlen(L, tokens) : 0) + (secrets ? mp_rawlen(L, secrets) : 0);
  mp_needle *nd = (mp_needle *)mp_newuserdata(L, count * sizeof *nd);
  int k = 0;
  if (token != NULL && tlen >= MP_MIN_CUT_TOKEN) {
    nd[k].s = token, nd[k].n = tlen, nd[k].rank = 2, nd[k++].label = "[token]";
  }
  if (tokens) k = add_needles(L, tokens, nd, k, MP_MIN_CUT_TOKEN, "[token]", 2);
  if (secrets) k = add_needles(L, secrets, nd, k, MP_MIN_CUT_SECRET, "[secret]", 1);
  mp_cut(L, text, n, nd, k);
  return 1;
}

/* core.redact(text [, token [, secrets]]): token may also be an array of
 * tokens (the command line does not know which string is the token). */
static int l_redact(lua_State *L) {
  size_t tlen = 0;
  const char *token = NULL;
  int tokens = 0, secrets = 0;
  luaL_checkstring(L, 1);
  if (lua_type(L, 2) == LUA_TTABLE) tokens = 2;
  else token = luaL_optlstring(L, 2, NULL, &tlen);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    secrets = 3;
  }
  return mp_redact(L, 1, token, tlen, tokens, secrets);
}

void mp_open_redact(lua_State *L) {
  lua_pushcfunction(L, l_redact);
  lua_setfield(L, -2, "redact");
  lua_pushinteger(L, MP_MIN_CUT_TOKEN);
  lua_setfield(L, -2, "MIN_CUT_TOKEN");
  lua_pushinteger(L, MP_MIN_CUT_SECRET);
  lua_setfield(L, -2, "MIN_CUT_SECRET");
}
