/*
 * validate.c -- one walk over a Lua table that both judges it against the
 * schema (schema.c) and, when asked, writes its JSON (encode.c) as it goes.
 * The first problem discards the output; the walk goes on to list every
 * problem, up to MP_MAX_ERRORS.
 *
 * Only raw access (lua_rawgeti, lua_next): a caller's metamethods never run.
 * Messages name fields, paths and types, never values: bodies carry secrets.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "core.h"
#include "encode.h"
#include "schema.h"

#define KEEP_BUFFER (64 * 1024) /* larger output buffers are freed after use */
#define STACK_CHUNK 64          /* extra Lua stack slots asked for at a time */

/* --- module state: the output buffer -------------------------------------- */

typedef struct mp_codec {
  mp_buf buf;
  int busy; /* a walk is writing to buf (a finalizer may call us meanwhile) */
} mp_codec;

static int codec_gc(lua_State *L) {
  mp_codec *c = (mp_codec *)lua_touserdata(L, 1);
  mp_buf_free(&c->buf);
  return 0;
}

/* Push a zeroed codec, given the metatable that is on top of the stack. */
static mp_codec *new_codec(lua_State *L) {
  mp_codec *c = (mp_codec *)mp_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  return c;
}

/* The shared codec, or a private one (left on the stack) for a nested call. */
static mp_codec *acquire(lua_State *L) {
  mp_codec *c = (mp_codec *)lua_touserdata(L, lua_upvalueindex(1));
  if (c->busy) {
    lua_getmetatable(L, lua_upvalueindex(1));
    c = new_codec(L);
    lua_remove(L, -2);
  }
  c->busy = 1;
  c->buf.len = 0;
  return c;
}

static void release(mp_codec *c) {
  c->busy = 0;
  mp_buf_trim(&c->buf, KEEP_BUFFER);
}

/* --- module state: the schema's field names, interned ---------------------
 *
 * Lua interns short strings (every string on 5.1 and LuaJIT), so a key equal
 * to a field name is the very string made here: one pointer compare finds a
 * field.  The strings are anchored in a table upvalue; any key that matches
 * no pointer (a stray, or a name too long to be interned) falls back to
 * comparing bytes, so the cache only ever makes the walk faster. */

#define MAX_OBJECTS 16 /* schema objects cached; others use the byte compare */
#define KEY_SLOTS 32   /* per object: a power of two, twice MP_MAX_FIELDS */

/* An open-addressed table from interned name to field index. */
typedef struct mp_keys {
  const char *key[KEY_SLOTS];
  signed char field[KEY_SLOTS];
} mp_keys;

typedef struct mp_names {
  int n;
  const mp_object *obj[MAX_OBJECTS];
  mp_keys keys[MAX_OBJECTS];
} mp_names;

static unsigned key_slot(const char *k) {
  uintptr_t h = (uintptr_t)k;
  return (unsigned)((h >> 3) ^ (h >> 8)) & (KEY_SLOTS - 1);
}

static void keys_add(mp_keys *t, const char *k, int field) {
  unsigned i = key_slot(k);
  while (t->key[i] != NULL) i = (i + 1) & (KEY_SLOTS - 1);
  t->key[i] = k;
  t->field[i] = (signed char)field;
}

/* The field whose interned name is k, or -1. */
static int keys_find(const mp_keys *t, const char *k) {
  unsigned i = key_slot(k);
  while (t->key[i] != NULL) {
    if (t->key[i] == k) return t->field[i];
    i = (i + 1) & (KEY_SLOTS - 1);
  }
  return -1;
}

static void intern_object(lua_State *L, mp_names *nm, const mp_object *o, int anchor) {
  int i, k;
  if (o == NULL) return;
  for (k = 0; k < nm->n; k++)
    if (nm->obj[k] == o) return;
  if (nm->n == MAX_OBJECTS) return;
  k = nm->n++;
  nm->obj[k] = o;
  for (i = 0; i < o->nfields; i++) {
    lua_pushlstring(L, o->fields[i].name, o->fields[i].len);
    keys_add(&nm->keys[k], lua_tostring(L, -1), i);
    lua_rawseti(L, anchor, (int)mp_rawlen(L, anchor) + 1);
  }
  for (i = 0; i < o->nfields; i++) {
    intern_object(L, nm, o->fields[i].obj, anchor);
    intern_object(L, nm, o->fields[i].alt, anchor);
  }
}

/* Push the names userdata and its anchor table. */
static void push_names(lua_State *L) {
  const mp_root *r;
  mp_names *nm = (mp_names *)mp_newuserdata(L, sizeof *nm);
  memset(nm, 0, sizeof *nm);
  lua_newtable(L);
  for (r = mp_schema_roots(); r->kind != NULL; r++) intern_object(L, nm, r->obj, lua_gettop(L));
}

static const mp_keys *interned_keys(const mp_names *nm, const mp_object *o) {
  int k;
  for (k = 0; k < nm->n; k++)
    if (nm->obj[k] == o) return &nm->keys[k];
  return NULL;
}

/* --- the walk context ----------------------------------------------------- */

/* One step of the path: a key (alive on the Lua stack or static) or an index. */
typedef struct mp_seg {
  const char *key; /* NULL for an array index */
  size_t len;
  long long index;
} mp_seg;

typedef struct mp_walk {
  lua_State *L;
  const mp_names *names;
  mp_buf *out;  /* NULL when only validating, or once the output is discarded */
  int oom;      /* the buffer could not grow */
  int errs;     /* stack slot of the errors table (nil until the first problem) */
  int nerr;     /* problems recorded */
  int stop;     /* MP_MAX_ERRORS reached */
  int depth;    /* tables open on the current path */
  int room;     /* the stack has room up to this index */
  int nseg;
  mp_seg seg[MP_MAX_DEPTH + 2];
  const void *open[MP_MAX_DEPTH]; /* those tables, to see cycles */
} mp_walk;

static void walk_init(mp_walk *w, lua_State *L, mp_buf *out) {
  w->L = L;
  w->names = (const mp_names *)lua_touserdata(L, lua_upvalueindex(2));
  w->out = out;
  w->oom = w->nerr = w->stop = w->depth = w->nseg = 0;
  lua_pushnil(L);
  w->errs = w->room = lua_gettop(L);
}

/* Segments past the array's end cannot happen (depth is bounded first), but
 * a silent drop beats writing out of bounds. */
#define SEG_CAP ((int)(sizeof(((mp_walk *)0)->seg) / sizeof(mp_seg)))

static void push_key(mp_walk *w, const char *key, size_t len) {
  if (w->nseg < SEG_CAP) {
    w->seg[w->nseg].key = key;
    w->seg[w->nseg].len = len;
  }
  w->nseg++;
}

static void push_index(mp_walk *w, long long i) {
  if (w->nseg < SEG_CAP) {
    w->seg[w->nseg].key = NULL;
    w->seg[w->nseg].index = i;
  }
  w->nseg++;
}

static void pop_seg(mp_walk *w) { w->nseg--; }

/* --- paths and problems ------------------------------------------------------ */

static int is_keyword(const char *k, size_t n) {
  static const char *const words[] = {
      "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
      "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
      NULL};
  int i;
  for (i = 0; words[i] != NULL; i++)
    if (strlen(words[i]) == n && memcmp(words[i], k, n) == 0) return 1;
  return 0;
}

/* Whether `a.k` reads right in Lua, or the key needs `a["k"]`. */
static int is_identifier(const char *k, size_t n) {
  size_t i;
  if (n == 0 || (k[0] >= '0' && k[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    char c = k[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  return !is_keyword(k, n);
}

/* A key as a Lua string literal; bytes of a key that is not UTF-8 as \ddd, so a
 * path is always printable text. */
static void add_quoted(luaL_Buffer *B, const char *k, size_t n) {
  int text = mp_utf8_valid(k, n);
  size_t i;
  luaL_addstring(B, "[\"");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    char tmp[8];
    if (c == '"' || c == '\\') {
      luaL_addchar(B, '\\');
      luaL_addchar(B, (char)c);
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !text)) {
      snprintf(tmp, sizeof tmp, "\\%03u", (unsigned)c);
      luaL_addstring(B, tmp);
    } else {
      luaL_addchar(B, (char)c);
    }
  }
  luaL_addstring(B, "\"]");
}

static void add_segment(luaL_Buffer *B, const mp_seg *s, int first) {
  char tmp[32];
  if (s->key == NULL) {
    snprintf(tmp, sizeof tmp, "[%lld]", s->index);
    luaL_addstring(B, tmp);
  } else if (is_identifier(s->key, s->len)) {
    if (!first) luaL_addchar(B, '.');
    luaL_addlstring(B, s->key, s->len);
  } else {
    add_quoted(B, s->key, s->len);
  }
}

static void push_path(mp_walk *w) {
  luaL_Buffer B;
  int i, n = w->nseg < SEG_CAP ? w->nseg : SEG_CAP;
  luaL_buffinit(w->L, &B);
  for (i = 0; i < n; i++) add_segment(&B, &w->seg[i], i == 0);
  luaL_pushresult(&B);
}

/* Record the problem whose message is on top of the stack (popped), at the
 * current path.  The output is worthless from now on. */
static void record(mp_walk *w) {
  lua_State *L = w->L;
  w->out = NULL;
  if (w->stop) {
    lua_pop(L, 1);
    return;
  }
  luaL_checkstack(L, 6, "validating");
  if (lua_isnil(L, w->errs)) {
    lua_newtable(L);
    lua_replace(L, w->errs);
  }
  lua_createtable(L, 0, 2);
  if (w->nerr == MP_MAX_ERRORS) {
    w->stop = 1;
    lua_pushliteral(L, "");
    lua_pushliteral(L, "more than " MP_STR(MP_MAX_ERRORS) " problems; stopped");
  } else {
    push_path(w);
    lua_pushvalue(L, -3);
  }
  lua_setfield(L, -3, "message");
  lua_setfield(L, -2, "path");
  lua_rawseti(L, w->errs, ++w->nerr);
  lua_pop(L, 1);
}

static void problem(mp_walk *w, const char *msg) {
  if (w->stop) return;
  lua_pushstring(w->L, msg);
  record(w);
}

/* Whether the table at idx has [1]: what users mean by "an array". */
static int has_index1(lua_State *L, int idx) {
  int arr;
  lua_rawgeti(L, idx, 1);
  arr = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return arr;
}


static int is_marked_array(lua_State *L, int idx) {
  int marked;
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, MP_ARRAY_MT);
  marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

/* A type name for messages: cjson.null is "null", tables "array" or "object". */
static const char *type_name(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL) return "null";
  if (t != LUA_TTABLE) return lua_typename(L, t);
  return has_index1(L, idx) || is_marked_array(L, idx) ? "array" : "object";
}

static void problem_type(mp_walk *w, const char *want, int idx) {
  if (w->stop) return;
  lua_pushfstring(w->L, "expected %s, got %s", want, type_name(w->L, idx));
  record(w);
}

/* "a, b, c" (last_sep "or": "a, b or c") after a prefix. */
static void problem_words(mp_walk *w, const char *prefix, const mp_words *words,
                          const char *last_sep) {
  luaL_Buffer B;
  int i;
  if (w->stop) return;
  luaL_buffinit(w->L, &B);
  luaL_addstring(&B, prefix);
  for (i = 0; words->values[i] != NULL; i++) {
    if (i > 0) luaL_addstring(&B, words->values[i + 1] != NULL ? ", " : last_sep);
    luaL_addstring(&B, words->values[i]);
  }
  luaL_pushresult(&B);
  record(w);
}

static void problem_at_key(mp_walk *w, const char *key, size_t len, const char *msg) {
  push_key(w, key, len);
  problem(w, msg);
  pop_seg(w);
}

/* --- writing ------------------------------------------------------------------ */

static void lost(mp_walk *w) {
  w->oom = 1;
  w->out = NULL;
}

static void emit(mp_walk *w, const char *s, size_t n) {
  if (w->out != NULL && !mp_buf_add(w->out, s, n)) lost(w);
}

/* Inline: brackets and commas are a fifth of what the walker writes. */
static inline void emit_char(mp_walk *w, char c) {
  mp_buf *b = w->out;
  if (b == NULL) return;
  if (b->len < b->cap || mp_buf_grow(b, 1)) b->data[b->len++] = c;
  else lost(w);
}

/* A caller's string: checked for UTF-8 (while written, when encoding). */
static void emit_string(mp_walk *w, const char *s, size_t n, const char *invalid) {
  int r;
  if (w->out == NULL) {
    if (!mp_utf8_valid(s, n)) problem(w, invalid);
    return;
  }
  r = mp_json_string(w->out, s, n);
  if (r < 0) problem(w, invalid);
  else if (r == 0) lost(w);
}

static void emit_comma(mp_walk *w, int *first) {
  if (!*first) emit_char(w, ',');
  *first = 0;
}

/* `,"name":` for a schema field: its name needs no escaping. */
static void emit_name(mp_walk *w, const mp_field *f, int *first) {
  char *d;
  if (w->out == NULL) return;
  if (!mp_buf_grow(w->out, f->len + 4)) {
    lost(w);
    return;
  }
  d = w->out->data + w->out->len;
  if (!*first) *d++ = ',';
  *first = 0;
  *d++ = '"';
  memcpy(d, f->name, f->len);
  d += f->len;
  *d++ = '"';
  *d++ = ':';
  w->out->len = (size_t)(d - w->out->data);
}

/* --- tables: depth, cycles and shape ------------------------------------------- */

/* What enter() found t to be. */
enum { REFUSED, PLAIN, MARKED };

/* t by its metatable: none (PLAIN), our array mark (MARKED), or one that
 * supplies contents -- __index, __pairs or __len: a read-only proxy, say --
 * whose event is stored in *event (REFUSED).  The walk reads tables raw, so
 * such a table would be sent as what it holds itself (an empty proxy as `[]`
 * or `{}`, wiping what it stands for): it is refused instead.  Any other
 * metatable is left alone.  Needs 3 stack slots. */
static int table_kind(lua_State *L, int t, const char **event) {
  static const char *const events[] = {"__index", "__pairs", "__len", NULL};
  int i, kind = PLAIN;
  if (!lua_getmetatable(L, t)) return PLAIN;
  luaL_getmetatable(L, MP_ARRAY_MT);
  if (lua_rawequal(L, -1, -2)) kind = MARKED;
  for (i = 0; kind == PLAIN && events[i] != NULL; i++) {
    lua_pushstring(L, events[i]);
    lua_rawget(L, -3);
    if (!lua_isnil(L, -1)) {
      *event = events[i];
      kind = REFUSED;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return kind;
}

/* Open table t on the path, with `slots` free stack slots: PLAIN or MARKED
 * (see table_kind), or REFUSED (problem recorded) when it must not be
 * descended into. */
static int enter(mp_walk *w, int t, int slots) {
  const char *event = NULL;
  int kind;
  const void *p = lua_topointer(w->L, t);
  int i;
  for (i = 0; i < w->depth; i++) {
    if (w->open[i] == p) {
      problem(w, "table contains itself (cycle)");
      return REFUSED;
    }
  }
  if (w->depth >= MP_MAX_DEPTH) {
    problem(w, "nesting deeper than " MP_STR(MP_MAX_DEPTH) " levels");
    return REFUSED;
  }
  /* Room is asked for in chunks: lua_checkstack keeps it for this call. */
  if (lua_gettop(w->L) + slots + 8 > w->room) {
    if (!lua_checkstack(w->L, slots + 8 + STACK_CHUNK)) {
      problem(w, "too deep for the Lua stack");
      return REFUSED;
    }
    w->room = lua_gettop(w->L) + slots + 8 + STACK_CHUNK;
  }
  if ((kind = table_kind(w->L, t, &event)) == REFUSED) {
    if (!w->stop) {
      lua_pushfstring(w->L, "has a metatable with %s: pass a plain table (its contents are read raw)", event);
      record(w);
    }
    return REFUSED;
  }
  w->open[w->depth++] = p;
  return kind;
}

static void leave(mp_walk *w) { w->depth--; }

/* The number at idx as a positive integer key, or 0. */
static long long positive_index(lua_State *L, int idx) {
  lua_Number d;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  if (mp_isinteger(L, idx)) return lua_tointeger(L, idx) > 0 ? (long long)lua_tointeger(L, idx) : 0;
  d = lua_tonumber(L, idx);
  return d >= 1 && d < 9007199254740992.0 && d == (double)(long long)d ? (long long)d : 0;
}

/* The message for a key that cannot be in a JSON object with string keys. */
static void problem_key(mp_walk *w, int key) {
  if (w->stop) return;
  if (positive_index(w->L, key) > 0) {
    problem(w, "table mixes integer and string keys");
    return;
  }
  lua_pushfstring(w->L, "key must be a string, got %s", type_name(w->L, key));
  record(w);
}

/* Whether t's keys are exactly 1..n (n >= 0); otherwise the problem is
 * recorded. */
static int array_length(mp_walk *w, int t, long long *n) {
  lua_State *L = w->L;
  long long count = 0, max = 0, strings = 0, i;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      strings++;
    } else if ((i = positive_index(L, -1)) == 0) {
      problem_key(w, -1);
      lua_pop(L, 1);
      return 0;
    } else {
      count++;
      max = i > max ? i : max;
    }
  }
  if (strings > 0 && count > 0) problem(w, "table mixes integer and string keys");
  else if (strings > 0) problem_type(w, "array", t);
  else if (max != count) problem(w, "array has holes");
  *n = count;
  return strings == 0 && max == count;
}

/* --- free-form values ------------------------------------------------------------ */

static void walk_any(mp_walk *w, int idx);

static void walk_string(mp_walk *w, int idx) {
  size_t n;
  const char *s;
  if (lua_type(w->L, idx) != LUA_TSTRING) {
    problem_type(w, "string", idx);
    return;
  }
  s = lua_tolstring(w->L, idx, &n);
  emit_string(w, s, n, "is not valid UTF-8");
}

static int is_finite(lua_Number d) { return d == d && d - d == 0; }

static void walk_number(mp_walk *w, int idx) {
  lua_Number d;
  if (mp_isinteger(w->L, idx)) {
    if (w->out != NULL && !mp_json_integer(w->out, lua_tointeger(w->L, idx))) lost(w);
    return;
  }
  d = lua_tonumber(w->L, idx);
  if (!is_finite(d)) problem(w, "must be a finite number");
  else if (w->out != NULL && !mp_json_number(w->out, d)) lost(w);
}

static void walk_sequence(mp_walk *w, int t) {
  long long n, i;
  if (!array_length(w, t, &n)) return;
  emit_char(w, '[');
  for (i = 1; i <= n && !w->stop; i++) {
    if (i > 1) emit_char(w, ',');
    lua_rawgeti(w->L, t, (int)i);
    push_index(w, i);
    walk_any(w, lua_gettop(w->L));
    pop_seg(w);
    lua_pop(w->L, 1);
  }
  emit_char(w, ']');
}

/* One member of a free-form object: the key is at -2, the value at -1. */
static void walk_member(mp_walk *w, int *first, int *key_bad) {
  size_t n;
  const char *k;
  if (lua_type(w->L, -2) != LUA_TSTRING) {
    if (!*key_bad) problem_key(w, -2); /* once per table is enough */
    *key_bad = 1;
    return;
  }
  k = lua_tolstring(w->L, -2, &n);
  push_key(w, k, n);
  emit_comma(w, first);
  emit_string(w, k, n, "key is not valid UTF-8");
  emit_char(w, ':');
  walk_any(w, lua_gettop(w->L));
  pop_seg(w);
}

/* A free-form object whose first key/value pair lua_next has just pushed. */
static void walk_members(mp_walk *w, int t) {
  int first = 1, key_bad = 0;
  emit_char(w, '{');
  do {
    walk_member(w, &first, &key_bad);
    lua_pop(w->L, 1);
  } while (!w->stop && lua_next(w->L, t));
  if (w->stop) lua_pop(w->L, 1); /* the key lua_next did not get to pop */
  emit_char(w, '}');
}

/* A free-form table: the first key decides object (string) or array. */
static void walk_table(mp_walk *w, int t) {
  int kind = enter(w, t, 4);
  if (kind == REFUSED) return;
  lua_pushnil(w->L);
  if (!lua_next(w->L, t)) {
    /* empty: an object, as metadata and extras want, unless marked */
    if (kind == MARKED) emit(w, "[]", 2);
    else emit(w, "{}", 2);
  } else if (lua_type(w->L, -2) == LUA_TSTRING) {
    if (kind == MARKED) {
      lua_pop(w->L, 2);
      problem(w, "marked as an array (marketplace.array) but has string keys");
    } else {
      walk_members(w, t);
    }
  } else {
    lua_pop(w->L, 2);
    walk_sequence(w, t);
  }
  leave(w);
}

static void walk_any(mp_walk *w, int idx) {
  lua_State *L = w->L;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: walk_string(w, idx); break;
    case LUA_TNUMBER: walk_number(w, idx); break;
    case LUA_TBOOLEAN: lua_toboolean(L, idx) ? emit(w, "true", 4) : emit(w, "false", 5); break;
    case LUA_TTABLE: walk_table(w, idx); break;
    case LUA_TNIL: emit(w, "null", 4); break; /* only reachable at the root */
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) { /* cjson.null */
        emit(w, "null", 4);
        break;
      }
      /* fall through */
    default: problem_type(w, "a JSON value", idx);
  }
}

/* metadata, extras: any JSON inside, but an object at the top. */
static void walk_map(mp_walk *w, int idx) {
  if (lua_type(w->L, idx) != LUA_TTABLE || has_index1(w->L, idx) || is_marked_array(w->L, idx))
    problem_type(w, "object", idx);
  else
    walk_table(w, idx);
}

/* --- schema objects ---------------------------------------------------------------- */

static void walk_object(mp_walk *w, const mp_object *o, int t, int update);

/* Field names are short: eight bytes a compare, inline, beats a call to memcmp. */
static int same_bytes(const char *a, const char *b, size_t n) {
  uint64_t x, y;
  for (; n >= 8; a += 8, b += 8, n -= 8) {
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) return 0;
  }
  while (n-- > 0)
    if (*a++ != *b++) return 0;
  return 1;
}

static int find_field(const mp_object *o, const char *k, size_t n, int update) {
  int i;
  for (i = 0; i < o->nfields; i++) {
    const mp_field *f = &o->fields[i];
    if (f->len == n && same_bytes(f->name, k, n)) return update && f->upd == MP_U_ABSENT ? -1 : i;
  }
  return -1;
}

static void walk_bool(mp_walk *w, int idx) {
  if (lua_type(w->L, idx) != LUA_TBOOLEAN) problem_type(w, "boolean", idx);
  else if (lua_toboolean(w->L, idx)) emit(w, "true", 4);
  else emit(w, "false", 5);
}

/* An enum wants the whole string, a prefix list (href) its start. */
static int word_matches(const mp_field *f, const char *s, size_t n) {
  int i;
  for (i = 0; f->words->values[i] != NULL; i++) {
    size_t wl = strlen(f->words->values[i]);
    if (f->type == MP_T_ENUM ? wl == n && !memcmp(s, f->words->values[i], n)
                             : wl <= n && !memcmp(s, f->words->values[i], wl))
      return 1;
  }
  return 0;
}

static void walk_word(mp_walk *w, const mp_field *f, int idx) {
  size_t n;
  const char *s;
  if (lua_type(w->L, idx) != LUA_TSTRING) {
    problem_type(w, "string", idx);
    return;
  }
  s = lua_tolstring(w->L, idx, &n);
  if (!word_matches(f, s, n))
    problem_words(w, f->type == MP_T_ENUM ? "must be one of " : "must start with ", f->words,
                  f->type == MP_T_ENUM ? ", " : " or ");
  else
    emit_string(w, s, n, "is not valid UTF-8"); /* the rest of an href may not be */
}

static void walk_array(mp_walk *w, const mp_object *item, int t) {
  long long n, i;
  if (lua_type(w->L, t) != LUA_TTABLE) {
    problem_type(w, "array", t);
    return;
  }
  if (enter(w, t, 2) == REFUSED) return;
  if (array_length(w, t, &n)) {
    emit_char(w, '[');
    for (i = 1; i <= n && !w->stop; i++) {
      if (i > 1) emit_char(w, ',');
      lua_rawgeti(w->L, t, (int)i);
      push_index(w, i);
      walk_object(w, item, lua_gettop(w->L), 0);
      pop_seg(w);
      lua_pop(w->L, 1);
    }
    emit_char(w, ']');
  }
  leave(w);
}

/* The update body's two-form fields: pick the form from the Lua value. */
static void walk_union(mp_walk *w, const mp_field *f, int idx) {
  int t = lua_type(w->L, idx), has;
  if (f->upd == MP_U_OR_STRING) {
    if (t == LUA_TSTRING) walk_string(w, idx);
    else if (t == LUA_TTABLE) walk_object(w, f->obj, idx, 0);
    else problem_type(w, "object or string", idx);
    return;
  }
  if (t != LUA_TTABLE) {
    problem_type(w, "array or object", idx);
    return;
  }
  lua_pushlstring(w->L, f->alt->fields[0].name, f->alt->fields[0].len);
  lua_rawget(w->L, idx);
  has = !lua_isnil(w->L, -1);
  lua_pop(w->L, 1);
  if (has) walk_object(w, f->alt, idx, 0);
  else walk_array(w, f->obj, idx);
}

static void walk_field(mp_walk *w, const mp_field *f, int idx, int update) {
  if (update && (f->upd == MP_U_OR_STRING || f->upd == MP_U_OR_OBJECT)) {
    walk_union(w, f, idx);
    return;
  }
  switch (f->type) {
    case MP_T_STRING: walk_string(w, idx); break;
    case MP_T_ENUM:
    case MP_T_PREFIXED: walk_word(w, f, idx); break;
    case MP_T_BOOL: walk_bool(w, idx); break;
    case MP_T_MAP: walk_map(w, idx); break;
    case MP_T_OBJECT: walk_object(w, f->obj, idx, 0); break;
    case MP_T_ARRAY: walk_array(w, f->obj, idx); break;
  }
}

/* Pass 1: each known field's value is left on the stack, its index in pos[]
 * (0: absent).  Returns how many keys are not known fields, or -1 when the
 * table has [1]: an array where an object was expected. */
static int stash_fields(mp_walk *w, const mp_object *o, int t, int *pos, int update) {
  lua_State *L = w->L;
  const mp_keys *keys = interned_keys(w->names, o);
  int strays = 0, i;
  size_t n;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    i = -1;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tolstring(L, -2, &n);
      if (keys != NULL) i = keys_find(keys, k);
      if (i < 0 || (update && o->fields[i].upd == MP_U_ABSENT)) i = find_field(o, k, n, update);
    } else if (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) == 1) {
      lua_pop(L, 2);
      return -1;
    }
    if (i >= 0) {
      lua_pushvalue(L, -2); /* the value stays, under a copy of the key for lua_next */
      pos[i] = lua_gettop(L) - 1;
    } else {
      strays++;
      lua_pop(L, 1);
    }
  }
  return strays;
}

/* Pass 2: the fields in descriptor order, which is the JSON key order. */
static void walk_fields(mp_walk *w, const mp_object *o, const int *pos, int update, int *first) {
  int i;
  for (i = 0; i < o->nfields && !w->stop; i++) {
    const mp_field *f = &o->fields[i];
    if (pos[i] == 0) {
      if (f->required && !update) problem_at_key(w, f->name, f->len, "is required");
      continue;
    }
    emit_name(w, f, first);
    push_key(w, f->name, f->len);
    walk_field(w, f, pos[i], update);
    pop_seg(w);
  }
}

/* An open object's extra keys: free-form values after the known fields. */
static void walk_extras(mp_walk *w, const mp_object *o, int t, int *first) {
  lua_State *L = w->L;
  int key_bad = 0;
  size_t n;
  lua_pushnil(L);
  while (!w->stop && lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
    if (k == NULL || find_field(o, k, n, 0) < 0) walk_member(w, first, &key_bad);
    lua_pop(L, 1);
  }
  /* On a stop lua_next's key stays behind: walk_object's settop drops it. */
}

typedef struct mp_str {
  const char *s;
  size_t n;
} mp_str;

static int compare_str(const void *a, const void *b) {
  const mp_str *x = (const mp_str *)a, *y = (const mp_str *)b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* A closed object's unknown keys, sorted by name so the report is the same
 * every time.  Error path only: the scratch array is a GC-owned userdata.
 * Each key is also put in an anchor table: recording a problem allocates,
 * an allocation may run a finalizer, and a finalizer may remove the key from
 * the body -- the string must outlive the pointer kept to it. */
static void report_strays(mp_walk *w, const mp_object *o, int t, int strays, int update) {
  lua_State *L = w->L;
  mp_str *names = (mp_str *)mp_newuserdata(L, (size_t)strays * sizeof *names);
  int count = 0, key_bad = 0, i, anchor;
  size_t n;
  const char *k;
  luaL_checkstack(L, 4, "validating");
  lua_createtable(L, strays, 0);
  anchor = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      if (!key_bad) problem_key(w, -1);
      key_bad = 1;
      continue;
    }
    k = lua_tolstring(L, -1, &n);
    if (find_field(o, k, n, update) < 0 && count < strays) {
      names[count].s = k;
      names[count++].n = n;
      lua_pushvalue(L, -1);
      lua_rawseti(L, anchor, count);
    }
  }
  qsort(names, (size_t)count, sizeof *names, compare_str);
  for (i = 0; i < count && !w->stop; i++) problem_at_key(w, names[i].s, names[i].n, "unknown field");
  lua_pop(L, 2);
}

static void walk_object(mp_walk *w, const mp_object *o, int t, int update) {
  lua_State *L = w->L;
  int pos[MP_MAX_FIELDS] = {0};
  int base = lua_gettop(L), strays, first = 1, kind;
  if (lua_type(L, t) != LUA_TTABLE) {
    problem_type(w, "object", t);
    return;
  }
  if ((kind = enter(w, t, 2 * o->nfields + 4)) != PLAIN) {
    if (kind == MARKED) { /* a marked array where an object belongs */
      problem_type(w, "object", t);
      leave(w);
    }
    return;
  }
  strays = stash_fields(w, o, t, pos, update);
  if (strays < 0) {
    lua_settop(L, base);
    problem_type(w, "object", t);
  } else {
    emit_char(w, '{');
    walk_fields(w, o, pos, update, &first);
    if (strays > 0 && o->open) walk_extras(w, o, t, &first);
    else if (strays > 0) report_strays(w, o, t, strays, update);
    emit_char(w, '}');
    lua_settop(L, base);
  }
  leave(w);
}

/* --- Lua functions ------------------------------------------------------------------- */

static const mp_root *check_kind(lua_State *L, int arg) {
  const char *kind = luaL_checkstring(L, arg);
  const mp_root *r;
  for (r = mp_schema_roots(); r->kind != NULL; r++)
    if (strcmp(r->kind, kind) == 0) return r;
  luaL_argerror(L, arg, "expected \"import\", \"update\" or \"secrets\"");
  return NULL;
}

/* true | nil, errors for validate; JSON | nil, errors for the encoders. */
static int finish(lua_State *L, mp_walk *w, mp_codec *c) {
  if (w->nerr > 0) {
    if (c != NULL) release(c);
    lua_pushnil(L);
    lua_pushvalue(L, w->errs);
    return 2;
  }
  if (c == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (w->oom) {
    release(c);
    return luaL_error(L, "not enough memory");
  }
  lua_pushlstring(L, c->buf.data, c->buf.len);
  release(c);
  return 1;
}

/* The value at index v against root r (NULL: a free-form value). */
static int run(lua_State *L, const mp_root *r, int v, int encode) {
  mp_walk w;
  mp_codec *c = encode ? acquire(L) : NULL;
  walk_init(&w, L, c != NULL ? &c->buf : NULL);
  if (r != NULL) walk_object(&w, r->obj, v, r->update);
  else walk_any(&w, v);
  return finish(L, &w, c);
}

static int l_validate(lua_State *L) {
  const mp_root *r = check_kind(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  return run(L, r, 2, 0);
}

static int l_encode(lua_State *L) {
  const mp_root *r = check_kind(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  return run(L, r, 2, 1);
}

static int l_encode_value(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  return run(L, NULL, 1, 1);
}

void mp_open_codec(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"validate", l_validate},
      {"encode", l_encode},
      {"encode_value", l_encode_value},
      {NULL, NULL},
  };
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, codec_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "vercel.marketplace.codec");
  lua_setfield(L, -2, "__name");
  new_codec(L);
  lua_remove(L, -2);
  push_names(L);
  mp_setfuncs(L, funcs, 3);
  luaL_newmetatable(L, MP_ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
}
