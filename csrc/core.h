/*
 * core.h -- what each concern of the C core hands to the module entry (core.c).
 * Each mp_open_* adds its functions to the module table on top of the stack.
 */
#ifndef MP_CORE_H
#define MP_CORE_H

#include "compat.h"

MP_BEGIN_INTERNAL

#define MP_VERSION "0.1.0"

/* core.array_mt, the mark of a table that is a JSON array even when empty (a
 * Lua table cannot tell `{}` from `[]`): the encoder reads it, the answer
 * fix-ups set it.  Made by mp_open_codec. */
#define MP_ARRAY_MT "vercel.marketplace.array"

void mp_open_schema(lua_State *L);    /* schema.c: enums, limits */
void mp_open_codec(lua_State *L);     /* validate.c: validate, encode, encode_value, array_mt */
void mp_open_answer(lua_State *L);    /* answer.c: mark_empty_arrays, restore, integerize */
void mp_open_session(lua_State *L);   /* session.c: session */
void mp_open_multi(lua_State *L);     /* multi.c: multi */
void mp_open_ids(lua_State *L);       /* ids.c: escape_id */

/* The metatable `name` (registry) with metamethods `meta`, the functions
 * `fields` as its __index and __name set: one shape for every userdata
 * class (core.c). */
void mp_register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *fields);

MP_END_INTERNAL

#endif /* MP_CORE_H */
