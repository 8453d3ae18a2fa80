/*
 * redact.c -- the one place where the token and secret values are cut out
 * of text: error answers (transport.c), the strings an error object carries
 * and log lines (response.lua through session:redact), and the CLI.
 *
 *   core.redact(text [, token [, secrets]]) -> text
 *     token:   cut as "[token]" when MIN_CUT_TOKEN bytes or more
 *     secrets: an array; each string of MIN_CUT_SECRET bytes or more is cut
 *              as "[secret]"
 */
#include <stdlib.h>
#include <string.h>

#include "redact.h"

static int longer_first(const void *a, const void *b) {
  size_t x = ((const mp_needle *)a)->n, y = ((const mp_needle *)b)->n;
  return (x < y) - (x > y);
}

/* The needle (longest first) that matches s at its start, or NULL. */
static const mp_needle *match_at(const char *s, size_t left, const mp_needle *nd, int k) {
  int i;
  for (i = 0; i < k; i++)
    if (nd[i].n <= left && s[0] == nd[i].s[0] && memcmp(s, nd[i].s, nd[i].n) == 0) return &nd[i];
  return NULL;
}

void mp_cut(lua_State *L, const char *s, size_t n, mp_needle *needles, int k) {
  size_t i = 0, from = 0;
  luaL_Buffer b;
  const mp_needle *hit;
  if (k == 0) {
    lua_pushlstring(L, s, n);
    return;
  }
  qsort(needles, (size_t)k, sizeof *needles, longer_first);
  luaL_buffinit(L, &b);
  while (i < n) {
    if ((hit = match_at(s + i, n - i, needles, k)) == NULL) {
      i++;
      continue;
    }
    luaL_addlstring(&b, s + from, i - from);
    luaL_addstring(&b, hit->label);
    from = i = i + hit->n;
  }
  luaL_addlstring(&b, s + from, n - from);
  luaL_pushresult(&b);
}

/* Each secret is pushed on the stack before its pointer is kept: a
 * finalizer run by an allocation below may empty the caller's table, and
 * the strings must outlive it.  The needle array is a userdata for the same
 * reason an error half-way leaks nothing. */
int mp_redact(lua_State *L, int idx, const char *token, size_t tlen, int secrets) {
  size_t n, len;
  const char *text = luaL_checklstring(L, idx, &n);
  int count = secrets ? (int)mp_rawlen(L, secrets) : 0, k = 0, i;
  mp_needle *nd = (mp_needle *)mp_newuserdata(L, (size_t)(count + 1) * sizeof *nd);
  luaL_checkstack(L, count + 4, "redacting");
  if (token != NULL && tlen >= MP_MIN_CUT_TOKEN) {
    nd[k].s = token, nd[k].n = tlen, nd[k++].label = "[token]";
  }
  for (i = 1; i <= count; i++) {
    lua_rawgeti(L, secrets, i);
    if (lua_type(L, -1) != LUA_TSTRING) continue; /* stays on the stack, harmless */
    nd[k].s = lua_tolstring(L, -1, &len);
    nd[k].n = len;
    nd[k].label = "[secret]";
    if (len >= MP_MIN_CUT_SECRET) k++;
  }
  mp_cut(L, text, n, nd, k);
  return 1;
}

static int l_redact(lua_State *L) {
  size_t tlen = 0;
  const char *token = luaL_optlstring(L, 2, NULL, &tlen);
  int secrets = 0;
  luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    secrets = 3;
  }
  return mp_redact(L, 1, token, tlen, secrets);
}

void mp_open_redact(lua_State *L) {
  lua_pushcfunction(L, l_redact);
  lua_setfield(L, -2, "redact");
  lua_pushinteger(L, MP_MIN_CUT_TOKEN);
  lua_setfield(L, -2, "MIN_CUT_TOKEN");
  lua_pushinteger(L, MP_MIN_CUT_SECRET);
  lua_setfield(L, -2, "MIN_CUT_SECRET");
}
