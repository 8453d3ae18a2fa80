/*
 * compat.h -- the one place where Lua 5.1 (and LuaJIT 2.1), 5.3 and 5.4 differ
 * for this module.  Everything is spelled mp_* so that we never define a lua_* or
 * luaL_* symbol ourselves (a module that does clashes with the host's own copy).
 */
#ifndef MP_COMPAT_H
#define MP_COMPAT_H

/* The rockspec also builds the core for the emulator's LuaJIT (inside nginx)
 * while compiling for another Lua; LuaRocks puts that Lua's include
 * directory first, so LuaJIT's headers are named by their own path here. */
#ifdef MP_LUAJIT_HEADERS
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#else
#include <lua.h>
#include <lauxlib.h>
#endif

#if LUA_VERSION_NUM < 502 /* Lua 5.1 and LuaJIT */

#define mp_rawlen(L, i) lua_objlen((L), (i))
#define mp_isinteger(L, i) 0 /* every number is a double */

static inline int mp_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}

/* luaL_setfuncs exists in LuaJIT but not in PUC 5.1: one copy serves both. */
static inline void mp_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

#else /* 5.2 and later */

#define mp_rawlen(L, i) lua_rawlen((L), (i))
#define mp_absindex(L, i) lua_absindex((L), (i))
#define mp_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#if LUA_VERSION_NUM >= 503
#define mp_isinteger(L, i) lua_isinteger((L), (i))
#else
#define mp_isinteger(L, i) 0
#endif

#endif

/* Userdata without user values: our structs hold everything they need. */
#if LUA_VERSION_NUM >= 504
#define mp_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#else
#define mp_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

/* Declarations between these are the core's own: hidden from the loader, so
 * only luaopen_vercel_marketplace_core is exported and calls between our
 * files are direct, whatever flags the module is built with (LuaRocks does
 * not pass -fvisibility=hidden). */
#if defined(__GNUC__)
#define MP_BEGIN_INTERNAL _Pragma("GCC visibility push(hidden)")
#define MP_END_INTERNAL _Pragma("GCC visibility pop")
#else
#define MP_BEGIN_INTERNAL
#define MP_END_INTERNAL
#endif

/* The walker calls these for every key and value.  Called through the GOT
 * rather than a PLT stub they cost measurably less (what -fno-plt does for
 * every call; LuaRocks builds with its own CFLAGS, so it is said here).  Only
 * functions whose signature is the same in 5.1 to 5.4 and LuaJIT. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__PIC__)
#define MP_NOPLT __attribute__((noplt))
extern int lua_type(lua_State *L, int idx) MP_NOPLT;
extern const char *lua_tolstring(lua_State *L, int idx, size_t *len) MP_NOPLT;
extern int lua_next(lua_State *L, int idx) MP_NOPLT;
extern int lua_gettop(lua_State *L) MP_NOPLT;
extern void lua_settop(lua_State *L, int idx) MP_NOPLT;
extern void lua_pushvalue(lua_State *L, int idx) MP_NOPLT;
extern const void *lua_topointer(lua_State *L, int idx) MP_NOPLT;
extern int lua_checkstack(lua_State *L, int n) MP_NOPLT;
#endif

#endif /* MP_COMPAT_H */
