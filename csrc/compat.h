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

#endif /* MP_COMPAT_H */
