/*
 * fuzz_body.c -- request bodies built from fuzz bytes, through core.validate,
 * core.encode (each kind), core.encode_value and core.integerize; the checks
 * themselves (agreement, strict JSON, round trip) are in fuzz/body_check.lua.
 *
 * The bytes are a little program that builds a Lua value (see gen_value):
 * one opcode byte, then its operands.  Past the end every read is 0, so any
 * input is a program.  fuzz/mkcorpus.lua writes programs from tables (the
 * seed corpus), with the same opcodes.
 */
#include <math.h>

#include "fuzz_common.h"

#define MAX_GEN_DEPTH 90  /* recursion of the generator itself */
#define MAX_TABLES 256    /* tables a later opcode may refer back to */
#define MAX_ITEMS 24

typedef struct prog {
  const uint8_t *p, *end;
  int ntables; /* registry-free: tables live in a Lua table at stack slot 1 */
} prog;

static unsigned byte(prog *g) { return g->p < g->end ? *g->p++ : 0; }

static uint64_t bytes8(prog *g) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v |= (uint64_t)byte(g) << (8 * i);
  return v;
}

typedef struct word {
  const char *s;
  size_t n;
} word;

#define W(lit) {lit, sizeof(lit) - 1}

/* Field names and words of the schema, so structure is found quickly; then
 * strings that must be refused or escaped (the lengths keep their NULs). */
static const word dict[] = {
    W("productId"), W("name"), W("status"), W("ownership"), W("metadata"), W("billingPlan"),
    W("notification"), W("extras"), W("secrets"), W("id"), W("type"), W("description"),
    W("paymentMethodRequired"), W("cost"), W("details"), W("highlightedDetails"),
    W("effectiveDate"), W("label"), W("value"), W("level"), W("title"), W("message"), W("href"),
    W("prefix"), W("environmentOverrides"), W("development"), W("preview"), W("production"),
    W("partial"), W("ready"), W("pending"), W("onboarding"), W("suspended"), W("resumed"),
    W("uninstalled"), W("error"), W("owned"), W("linked"), W("sandbox"), W("prepayment"),
    W("subscription"), W("info"), W("warn"), W("https://x.test/a"), W("http://"), W("sso:z"),
    W("ftp://no"), W(""), W("a"), W("\xC3\xA9"), W("\xF0\x9F\x98\x80"), W("\xff"), W("\xC0\xAF"),
    W("\xED\xA0\x80"), W("a\0b"), W("1"), W("__index"), W("end"), W("a b"), W("\"\\"),
    W("\x7f\x01\n"),
};
#define NDICT ((unsigned)(sizeof dict / sizeof dict[0]))

static const double specials[] = {
    0.0, -0.0, 0.5, -1.5, 1e300, -1e-300, 4.9e-324, 9007199254740992.0, 9007199254740993.0,
    9223372036854775808.0, -9223372036854775808.0, 1e22, 0.1, 1.0 / 3.0, 123456789.125,
};
#define NSPECIAL ((unsigned)(sizeof specials / sizeof specials[0]))

static void push_dict(lua_State *L, unsigned i) {
  lua_pushlstring(L, dict[i % NDICT].s, dict[i % NDICT].n);
}

static void push_raw(lua_State *L, prog *g, size_t n) {
  size_t have = (size_t)(g->end - g->p);
  if (n > have) n = have;
  lua_pushlstring(L, (const char *)g->p, n);
  g->p += n;
}

static int raising(lua_State *L) { return luaL_error(L, "metamethod called"); }

/* A metatable whose every metamethod raises: raw access must never notice. */
static void set_raising_meta(lua_State *L) {
  static const char *const events[] = {"__index", "__newindex", "__len", "__pairs", "__eq",
                                       "__tostring", "__name", "__call", "__concat", NULL};
  int i;
  if (lua_type(L, -1) != LUA_TTABLE) return;
  lua_createtable(L, 0, 9);
  for (i = 0; events[i] != NULL; i++) {
    if (strcmp(events[i], "__name") == 0) lua_pushinteger(L, 7); /* a non-string __name */
    else lua_pushcfunction(L, raising);
    lua_setfield(L, -2, events[i]);
  }
  lua_setmetatable(L, -2);
}

static void gen_value(lua_State *L, prog *g, int depth);

/* A new table, remembered so a later opcode can refer to it (cycles). */
static void new_table(lua_State *L, prog *g, int narr, int nrec) {
  lua_createtable(L, narr, nrec);
  if (g->ntables < MAX_TABLES) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, 1, ++g->ntables);
  }
}

static void gen_key(lua_State *L, prog *g, int depth) {
  unsigned b = byte(g);
  if (b < 0xF0) push_dict(L, b);
  else if (b < 0xF8) push_raw(L, g, byte(g) % 16);
  else gen_value(L, g, depth); /* any value as a key: numbers, booleans, tables */
}

/* t[k] = v for the key and value on top, unless the key cannot be one. */
static void set_pair(lua_State *L) {
  if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
    lua_pop(L, 2);
  else
    lua_rawset(L, -3);
}

static void gen_object(lua_State *L, prog *g, int depth) {
  unsigned n = byte(g) % MAX_ITEMS, i;
  new_table(L, g, 0, (int)n);
  for (i = 0; i < n && g->p < g->end; i++) {
    gen_key(L, g, depth + 1);
    gen_value(L, g, depth + 1);
    set_pair(L);
  }
}

static void gen_array(lua_State *L, prog *g, int depth, int sparse) {
  unsigned n = byte(g) % MAX_ITEMS, i;
  lua_Integer at = 0;
  new_table(L, g, (int)n, 0);
  for (i = 0; i < n && g->p < g->end; i++) {
    at += sparse ? 1 + (lua_Integer)(byte(g) % 4) : 1; /* sparse: holes of 0-3 */
    gen_value(L, g, depth + 1);
    lua_rawseti(L, -2, at);
  }
}

/* `levels` tables around one value: {x} or {key = x}, as deep as asked. */
static void gen_deep(lua_State *L, prog *g, int depth) {
  unsigned levels = byte(g) * 4 + byte(g) % 4, key = byte(g), i;
  int arrays = key & 1;
  gen_value(L, g, depth + 1);
  luaL_checkstack(L, 4, "deep");
  for (i = 0; i < levels; i++) {
    lua_createtable(L, 1, 1);
    lua_insert(L, -2);
    if (arrays) lua_rawseti(L, -2, 1);
    else lua_setfield(L, -2, dict[key % NDICT].s);
  }
}

static void gen_odd(lua_State *L, prog *g) {
  static int anchor;
  switch (byte(g) % 4) {
    case 0: lua_pushcfunction(L, raising); break;
    case 1: lua_newthread(L); break;
    case 2: lua_newuserdatauv(L, 8, 0); break;
    default: lua_pushlightuserdata(L, &anchor); break; /* not cjson.null */
  }
}

static void gen_number(lua_State *L, prog *g, unsigned op) {
  uint64_t bits;
  double d;
  switch (op) {
    case 3: lua_pushinteger(L, (lua_Integer)(int8_t)byte(g)); break;
    case 4: lua_pushinteger(L, (lua_Integer)bytes8(g)); break;
    case 5:
      bits = bytes8(g);
      memcpy(&d, &bits, sizeof d);
      lua_pushnumber(L, d);
      break;
    default: {
      unsigned b = byte(g);
      if (b >= 0xFD) lua_pushnumber(L, b == 0xFD ? NAN : b == 0xFE ? INFINITY : -INFINITY);
      else lua_pushnumber(L, specials[b % NSPECIAL]);
    }
  }
}

/* One opcode (low nibble) and its operands: the value is pushed. */
static void gen_value(lua_State *L, prog *g, int depth) {
  unsigned op = byte(g) & 0x0F;
  luaL_checkstack(L, 8, "fuzz");
  if (depth > MAX_GEN_DEPTH && op >= 9) op = 0; /* leaves only, past the limit */
  switch (op) {
    case 0: case 1: push_dict(L, byte(g)); break;
    case 2: push_raw(L, g, byte(g)); break;
    case 3: case 4: case 5: case 6: gen_number(L, g, op); break;
    case 7: lua_pushboolean(L, byte(g) & 1); break;
    case 8: lua_pushlightuserdata(L, NULL); break; /* cjson.null */
    case 9: gen_object(L, g, depth); break;
    case 10: gen_array(L, g, depth, 0); break;
    case 11: gen_array(L, g, depth, 1); break;
    case 12: /* a table made earlier: shared, or a cycle if still open */
      if (g->ntables == 0) lua_pushboolean(L, 0);
      else lua_rawgeti(L, 1, 1 + (lua_Integer)(byte(g) % (unsigned)g->ntables));
      break;
    case 13: gen_odd(L, g); break;
    case 14:
      if (byte(g) & 1) gen_deep(L, g, depth);
      else {
        gen_value(L, g, depth + 1);
        set_raising_meta(L);
      }
      break;
    default: { /* a long string of one byte, up to 64 KiB */
      size_t n = (size_t)byte(g) << 8 | byte(g);
      char c = (char)byte(g);
      luaL_Buffer B;
      char *s = luaL_buffinitsize(L, &B, n);
      memset(s, c, n);
      luaL_pushresultsize(&B, n);
    }
  }
}

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prog g = {data, data + size, 0};
  unsigned kind;
  if (L == NULL) L = fuzz_state("body_check.lua");
  lua_settop(L, 0);
  lua_newtable(L); /* slot 1: the tables made, for back references */
  kind = byte(&g) % 3;
  gen_value(L, &g, 0);
  lua_pushinteger(L, (lua_Integer)kind + 1);
  lua_insert(L, -2);
  fuzz_check(L, 2);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0); /* so that LeakSanitizer sees a clean heap */
  return 0;
}
