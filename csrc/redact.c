/*
 * redact.c -- the one place where the token and secret values are cut out
 * of text: error answers (easy.c), the strings an error object carries
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

/* Mark in cover[] every byte of every occurrence of needle nd, occurrences
 * found by Knuth-Morris-Pratt (fail[] is scratch for nd->n entries): time
 * linear in the text and the value, whatever their bytes (a naive search is
 * quadratic for a value of one repeated byte).  Only bytes past the last
 * marked end are written, so overlapping occurrences cost nothing more. */
static void cover_needle(const char *s, size_t n, const mp_needle *nd, size_t *fail, unsigned char *cover) {
  size_t i, q = 0, done = 0;
  fail[0] = 0;
  for (i = 1; i < nd->n; i++) {
    while (q > 0 && nd->s[i] != nd->s[q]) q = fail[q - 1];
    if (nd->s[i] == nd->s[q]) q++;
    fail[i] = q;
  }
  for (i = 0, q = 0; i < n; i++) {
    while (q > 0 && s[i] != nd->s[q]) q = fail[q - 1];
    if (s[i] == nd->s[q]) q++;
    if (q == nd->n) { /* an occurrence ends at i */
      size_t from = i + 1 - nd->n;
      for (from = from > done ? from : done; from <= i; from++)
        if (cover[from] < nd->rank) cover[from] = nd->rank;
      done = i + 1;
      q = fail[q - 1];
    }
  }
}

/* Mark in cover[] every byte of every occurrence of every needle, the
 * highest rank winning; returns cover (a GC-owned userdata left on the
 * stack, as is the scratch table of the search) or NULL when nothing
 * matched (then nothing is left).  Occurrences may overlap each other and
 * themselves: cutting one value after another, or the longest at each
 * position, leaves the tail of a value that overlaps the end of another. */
static unsigned char *cover_matches(lua_State *L, const char *s, size_t n, const mp_needle *nd, int k) {
  unsigned char *cover;
  size_t *fail, longest = 0, i;
  int t, hit = 0;
  for (t = 0; t < k; t++) {
    if (nd[t].n > longest) longest = nd[t].n;
    hit = hit || (nd[t].n > 0 && nd[t].n <= n && memchr(s, nd[t].s[0], n - nd[t].n + 1) != NULL);
  }
  if (!hit) return NULL; /* the usual case: nothing to cut, nothing allocated */
  fail = (size_t *)mp_newuserdata(L, longest * sizeof *fail);
  cover = (unsigned char *)mp_newuserdata(L, n);
  memset(cover, 0, n);
  for (t = 0; t < k; t++)
    if (nd[t].n > 0 && nd[t].n <= n) cover_needle(s, n, &nd[t], fail, cover);
  for (i = 0; i < n; i++)
    if (cover[i]) return cover;
  lua_pop(L, 2);
  return NULL;
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
  lua_replace(L, -3); /* over the search's scratch */
  lua_pop(L, 1);      /* the cover */
}

/* Needles for the strings among the first `count` of the array at index
 * t, of min bytes or more, from nd[k] up to cap; returns the new k.  Each
 * string is put in the anchor table (at index anchor) before its pointer is
 * kept: a finalizer run by an allocation may empty the caller's table, and
 * the strings must outlive it.  One table, not a stack slot each: LuaJIT's
 * C stack holds 8000 values, a body may carry more secrets.  count was read
 * before nd was allocated: a finalizer that grows the table meanwhile
 * cannot make us write past the array. */
static int add_needles(lua_State *L, int t, size_t count, int anchor, mp_needle *nd, int k, int cap,
                       size_t min, const char *label, unsigned char rank) {
  size_t i, len;
  for (i = 1; i <= count && k < cap; i++) {
    lua_rawgeti(L, t, (int)i);
    if (lua_type(L, -1) == LUA_TSTRING && (nd[k].s = lua_tolstring(L, -1, &len), len >= min)) {
      nd[k].n = len, nd[k].label = label, nd[k].rank = rank;
      lua_rawseti(L, anchor, ++k);
    } else {
      lua_pop(L, 1);
    }
  }
  return k;
}

/* The needle array is a userdata, so an error half-way leaks nothing. */
int mp_redact(lua_State *L, int idx, const char *token, size_t tlen, int tokens, int secrets) {
  size_t n, ntok = tokens ? mp_rawlen(L, tokens) : 0, nsec = secrets ? mp_rawlen(L, secrets) : 0;
  const char *text = luaL_checklstring(L, idx, &n);
  int cap = (int)(1 + ntok + nsec), k = 0, anchor;
  mp_needle *nd;
  if (ntok + nsec > 1000000) luaL_error(L, "too many values to redact");
  nd = (mp_needle *)mp_newuserdata(L, (size_t)cap * sizeof *nd);
  lua_createtable(L, cap, 0);
  anchor = lua_gettop(L);
  if (token != NULL && tlen >= MP_MIN_CUT_TOKEN) {
    nd[k].s = token, nd[k].n = tlen, nd[k].rank = 2, nd[k++].label = "[token]";
    lua_pushboolean(L, 1); /* a placeholder: the token is the caller's */
    lua_rawseti(L, anchor, k);
  }
  k = add_needles(L, tokens, ntok, anchor, nd, k, cap, MP_MIN_CUT_TOKEN, "[token]", 2);
  k = add_needles(L, secrets, nsec, anchor, nd, k, cap, MP_MIN_CUT_SECRET, "[secret]", 1);
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
