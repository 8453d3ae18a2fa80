/*
 * answer.c -- what Debian's lua-cjson 2.1.0 loses when it decodes an
 * answer, given back: empty arrays (it reads `[]` as a table like `{}`),
 * integers (it reads every number as a double) and integers too long for a
 * double (read again from the text).  Used by the client (response.lua) and
 * the emulator alike.
 *
 *   local text, placeholder = core.mark_empty_arrays(json [, numbers])
 *   local v, big = core.restore(cjson.decode(text))   -- or core.integerize(v)
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define INTEGERIZE_DEPTH 1000 /* as deep as lua-cjson decodes by default */

/* The string an empty JSON array stands for while cjson decodes: 0xFF is never
 * UTF-8, so no valid JSON text holds it in a string (an invalid one is not
 * marked at all), and our encoder refuses it. */
#define EMPTY_ARRAY "\xff\xfe[]"
#define EMPTY_ARRAY_JSON "\"" EMPTY_ARRAY "\""
/* The prefix of an integer literal too long for a double (16 digits or
 * more) kept as text while cjson decodes, for restore to read exactly. */
#define LONG_INT "\xff\xfd"
#define LONG_INT_DIGITS 16

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Past the string literal whose opening quote is at s[i]. */
static size_t skip_string(const char *s, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (s[i] == '\\') i++;
    else if (s[i] == '"') return i + 1;
  }
  return n;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The end of the empty array "[ ]" whose '[' is at s[i], or 0. */
static size_t empty_array_end(const char *s, size_t n, size_t i) {
  size_t j;
  for (j = i + 1; j < n && is_json_space(s[j]); j++) {}
  return j < n && s[j] == ']' ? j + 1 : 0;
}

/* The end of the integer literal of LONG_INT_DIGITS digits or more (a
 * minus sign allowed) at s[i], or 0: what a double cannot hold exactly. */
static size_t long_int_end(const char *s, size_t n, size_t i) {
  size_t j = i + (s[i] == '-');
  size_t k = j;
  while (k < n && is_digit(s[k])) k++;
  if (k - j < LONG_INT_DIGITS || (k < n && (s[k] == '.' || s[k] == 'e' || s[k] == 'E'))) return 0;
  return k;
}

typedef struct mp_mark {
  luaL_Buffer b;
  int found;
  size_t from;
} mp_mark;

/* The text from the last mark up to `at`, then `with`; the text resumes at
 * `from`. */
static void mark(lua_State *L, mp_mark *m, const char *s, size_t at, const char *with, size_t from) {
  if (!m->found) luaL_buffinit(L, &m->b);
  m->found = 1;
  luaL_addlstring(&m->b, s + m->from, at - m->from);
  luaL_addstring(&m->b, with);
  m->from = from;
}

/* core.mark_empty_arrays(json [, numbers]) -> json with each empty array
 * (outside strings) written as the placeholder string -- and with numbers,
 * each integer literal of 16 digits or more as a string of its own -- and
 * the placeholder; or json alone when there was nothing to mark.  Most
 * answers have no '[' at all.  A text holding a 0xFF byte (never UTF-8, but
 * cjson 2.1 lets it through in strings) is left alone: a string in it could
 * pass for a placeholder. */
static int l_mark_empty_arrays(lua_State *L) {
  size_t n, i = 0, end;
  const char *s = luaL_checklstring(L, 1, &n);
  int numbers = lua_toboolean(L, 2);
  mp_mark m;
  lua_settop(L, 1);
  if ((!numbers && memchr(s, '[', n) == NULL) || memchr(s, 0xFF, n) != NULL) return 1;
  m.found = 0;
  m.from = 0;
  while (i < n) {
    if (s[i] == '"') {
      i = skip_string(s, n, i);
    } else if (s[i] == '[' && (end = empty_array_end(s, n, i)) != 0) {
      mark(L, &m, s, i, EMPTY_ARRAY_JSON, end);
      i = end;
    } else if (numbers && (s[i] == '-' || is_digit(s[i]))) {
      if ((end = long_int_end(s, n, i)) != 0) { /* "<prefix><digits>" */
        mark(L, &m, s, i, "\"" LONG_INT, i);
        luaL_addlstring(&m.b, s + i, end - i);
        luaL_addchar(&m.b, '"');
        m.from = end;
      }
      while (i < n && (s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || is_digit(s[i]))) i++;
    } else {
      i++;
    }
  }
  if (!m.found) return 1;
  luaL_addlstring(&m.b, s + m.from, n - m.from);
  luaL_pushresult(&m.b);
  lua_pushliteral(L, EMPTY_ARRAY);
  return 2;
}

/* Tables on the current path are skipped, so a cycle cannot loop. */
typedef struct mp_intz {
  int depth;
  int arrays; /* placeholders become marked empty arrays, long integers numbers */
  int big;    /* an integral float of 2^53 or more was seen: maybe not exact */
  const void *open[INTEGERIZE_DEPTH];
} mp_intz;

/* A long integer kept as text (mark_empty_arrays with numbers) at idx:
 * pushed as a number -- an integer when it fits one (5.3+), else a float --
 * and 1, or 0 when the value is no such text. */
static int push_long_int(lua_State *L, int idx) {
  size_t len;
  const char *v;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  v = lua_tolstring(L, idx, &len);
  if (len <= 2 || memcmp(v, LONG_INT, 2) != 0) return 0;
#if LUA_VERSION_NUM >= 503
  return lua_stringtonumber(L, v + 2) != 0;
#else
  lua_pushnumber(L, strtod(v + 2, NULL));
  return 1;
#endif
}

static int is_placeholder(lua_State *L, int idx) {
  size_t len;
  const char *v;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  v = lua_tolstring(L, idx, &len);
  return len == sizeof(EMPTY_ARRAY) - 1 && memcmp(v, EMPTY_ARRAY, len) == 0;
}

static void push_empty_array(lua_State *L) {
  lua_newtable(L);
  luaL_getmetatable(L, MP_ARRAY_MT);
  lua_setmetatable(L, -2);
}

/* The value at -1 (its key at -2) of table t, fixed in place: floats that
 * are integers become integers (5.3+), placeholders empty arrays and
 * numbers. */
static void restore_value(lua_State *L, int t, mp_intz *z) {
#if LUA_VERSION_NUM >= 503
  lua_Integer i;
  lua_Number d;
  if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
    d = lua_tonumber(L, -1);
    /* 2^53 or more: the text may hold digits the double lost, also when it
     * rounded up past a Lua integer (2^63 - 1 reads as 2^63) */
    if (d >= 9007199254740992.0 || d <= -9007199254740992.0) z->big = 1;
  }
  if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
      lua_numbertointeger((d = lua_tonumber(L, -1)), &i) && (lua_Number)i == d) {
    lua_pushvalue(L, -2);
    lua_pushinteger(L, i);
    lua_rawset(L, t); /* an existing key: allowed during lua_next */
    return;
  }
#endif
  if (!z->arrays || lua_type(L, -1) != LUA_TSTRING) return;
  lua_pushvalue(L, -2);
  if (is_placeholder(L, -2)) push_empty_array(L);
  else if (!push_long_int(L, -2)) {
    lua_pop(L, 1);
    return;
  }
  lua_rawset(L, t);
}

static void restore_table(lua_State *L, int t, mp_intz *z) {
  const void *p = lua_topointer(L, t);
  int i;
  if (z->depth >= INTEGERIZE_DEPTH || !lua_checkstack(L, 6)) return;
  for (i = 0; i < z->depth; i++)
    if (z->open[i] == p) return;
  z->open[z->depth++] = p;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -1) == LUA_TTABLE) restore_table(L, lua_gettop(L), z);
    else restore_value(L, t, z);
    lua_pop(L, 1);
  }
  z->depth--;
}

static int restore(lua_State *L, int arrays) {
  mp_intz z; /* 8 KiB of C stack, no allocation */
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  if (arrays && is_placeholder(L, 1)) {
    push_empty_array(L);
    return 1;
  }
#if LUA_VERSION_NUM < 503
  if (!arrays) return 1; /* no integer subtype before 5.3 */
#endif
  z.depth = z.big = 0;
  z.arrays = arrays;
  if (lua_type(L, 1) == LUA_TTABLE) restore_table(L, 1, &z);
  lua_pushboolean(L, z.big);
  return 2;
}

/* core.integerize(v) -> v, its integral floats made integers (5.3+), and
 * whether one of them was 2^53 or more, where a double may have lost digits
 * (then decode again with mark_empty_arrays(text, true)). */
static int l_integerize(lua_State *L) { return restore(L, 0); }

/* core.restore(v) -> v after cjson.decode of mark_empty_arrays' text:
 * integers as integerize, each placeholder an empty core.array_mt table and
 * each long integer kept as text a number; and `big` as integerize. */
static int l_restore(lua_State *L) { return restore(L, 1); }

void mp_open_answer(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"integerize", l_integerize},
      {"mark_empty_arrays", l_mark_empty_arrays},
      {"restore", l_restore},
      {NULL, NULL},
  };
  mp_setfuncs(L, funcs, 0);
}
