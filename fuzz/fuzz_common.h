/*
 * fuzz_common.h -- what both libFuzzer harnesses share: one Lua 5.4 state for
 * the whole run, with the C core linked into the harness (so it is
 * instrumented) and preloaded as vercel.marketplace.core, Debian's cjson.so
 * and our Lua modules loaded from the work tree, and a strict JSON checker of
 * our own (cjson accepts nan, inf and hex numbers: not a judge of our output).
 *
 * FUZZ_ROOT (the repository) and CJSON_CPATH are set by the Makefile.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_vercel_marketplace_core(lua_State *L);

/* --- a strict RFC 8259 checker --------------------------------------------- */

typedef struct jchk {
  const unsigned char *p, *end;
  int depth;
} jchk;

static void j_ws(jchk *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int j_lit(jchk *c, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return 0;
  c->p += n;
  return 1;
}

static int j_digits(jchk *c) {
  const unsigned char *s = c->p;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
  return c->p > s;
}

static int j_number(jchk *c) {
  if (c->p < c->end && *c->p == '-') c->p++;
  if (c->p < c->end && *c->p == '0') c->p++;
  else if (!(c->p < c->end && *c->p >= '1' && *c->p <= '9' && j_digits(c))) return 0;
  if (c->p < c->end && *c->p == '.') {
    c->p++;
    if (!j_digits(c)) return 0;
  }
  if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
    c->p++;
    if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
    if (!j_digits(c)) return 0;
  }
  return 1;
}

static int j_hex4(jchk *c, unsigned *v) {
  int i;
  *v = 0;
  if (c->end - c->p < 4) return 0;
  for (i = 0; i < 4; i++) {
    unsigned char h = *c->p++;
    *v <<= 4;
    if (h >= '0' && h <= '9') *v |= h - '0';
    else if (h >= 'a' && h <= 'f') *v |= h - 'a' + 10;
    else if (h >= 'A' && h <= 'F') *v |= h - 'A' + 10;
    else return 0;
  }
  return 1;
}

/* One UTF-8 sequence (Unicode table 3-7), or 0. */
static int j_utf8(jchk *c) {
  const unsigned char *s = c->p;
  size_t n = (size_t)(c->end - s), len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (s[0] < 0x80) len = 1;
  else if (s[0] < 0xC2 || s[0] > 0xF4) return 0;
  else if (s[0] < 0xE0) len = 2;
  else if (s[0] < 0xF0) len = 3;
  else len = 4;
  if (n < len) return 0;
  if (s[0] == 0xE0) lo = 0xA0;
  if (s[0] == 0xED) hi = 0x9F;
  if (s[0] == 0xF0) lo = 0x90;
  if (s[0] == 0xF4) hi = 0x8F;
  if (len > 1 && (s[1] < lo || s[1] > hi)) return 0;
  if (len > 2 && (s[2] & 0xC0) != 0x80) return 0;
  if (len > 3 && (s[3] & 0xC0) != 0x80) return 0;
  c->p += len;
  return 1;
}

static int j_string(jchk *c) {
  unsigned v, w;
  if (!j_lit(c, "\"")) return 0;
  while (c->p < c->end && *c->p != '"') {
    if (*c->p < 0x20) return 0;
    if (*c->p != '\\') {
      if (!j_utf8(c)) return 0;
      continue;
    }
    c->p++;
    if (c->p >= c->end) return 0;
    switch (*c->p++) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
      case 'u':
        if (!j_hex4(c, &v)) return 0;
        if (v >= 0xDC00 && v <= 0xDFFF) return 0; /* a lone low surrogate */
        if (v >= 0xD800 && v <= 0xDBFF) {         /* must be a pair */
          if (!j_lit(c, "\\u") || !j_hex4(c, &w) || w < 0xDC00 || w > 0xDFFF) return 0;
        }
        break;
      default: return 0;
    }
  }
  return j_lit(c, "\"");
}

static int j_value(jchk *c);

static int j_container(jchk *c, char close, int object) {
  c->p++;
  if (++c->depth > 2000) return 0;
  j_ws(c);
  if (j_lit(c, close == ']' ? "]" : "}")) {
    c->depth--;
    return 1;
  }
  for (;;) {
    j_ws(c);
    if (object) {
      if (!j_string(c)) return 0;
      j_ws(c);
      if (!j_lit(c, ":")) return 0;
    }
    if (!j_value(c)) return 0;
    j_ws(c);
    if (j_lit(c, ",")) continue;
    if (!j_lit(c, close == ']' ? "]" : "}")) return 0;
    c->depth--;
    return 1;
  }
}

static int j_value(jchk *c) {
  j_ws(c);
  if (c->p >= c->end) return 0;
  switch (*c->p) {
    case '{': return j_container(c, '}', 1);
    case '[': return j_container(c, ']', 0);
    case '"': return j_string(c);
    case 't': return j_lit(c, "true");
    case 'f': return j_lit(c, "false");
    case 'n': return j_lit(c, "null");
    default: return j_number(c);
  }
}

/* strict_json(s) -> true | false, byte offset of the problem */
static int l_strict_json(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  jchk c = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
  int ok = j_value(&c);
  if (ok) {
    j_ws(&c);
    ok = c.p == c.end;
  }
  lua_pushboolean(L, ok);
  lua_pushinteger(L, (lua_Integer)(c.p - (const unsigned char *)s));
  return 2;
}

/* --- the Lua state --------------------------------------------------------- */

static int fuzz_traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* A failed check is a finding: print it and abort, so libFuzzer keeps the input. */
static void fuzz_die(lua_State *L, const char *what) {
  fprintf(stderr, "%s: %s\n", what, lua_tostring(L, -1));
  abort();
}

/* The state, with `script` (fuzz/<script>) loaded: it returns the check
 * function, kept in the registry under "fuzz.check". */
static lua_State *fuzz_state(const char *script) {
  lua_State *L = luaL_newstate();
  char path[4096];
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_ROOT "/lua/?.lua;" FUZZ_ROOT "/lua/?/init.lua;" FUZZ_ROOT "/fuzz/?.lua");
  lua_setfield(L, -2, "path");
  lua_pushstring(L, CJSON_CPATH);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  luaL_requiref(L, "vercel.marketplace.core", luaopen_vercel_marketplace_core, 0);
  lua_pop(L, 1);
  lua_register(L, "strict_json", l_strict_json);
  snprintf(path, sizeof path, "%s/fuzz/%s", FUZZ_ROOT, script);
  if (luaL_dofile(L, path) != LUA_OK) fuzz_die(L, "loading the check script");
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
  return L;
}

/* Call the check function with the `nargs` values on the stack (below them
 * nothing else of ours); a raised error is a finding. */
static void fuzz_check(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, fuzz_traceback);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.check");
  lua_rotate(L, base + 1, 2);
  if (lua_pcall(L, nargs, 0, base + 1) != LUA_OK) fuzz_die(L, "check failed");
  lua_settop(L, base);
}

#endif /* FUZZ_COMMON_H */
