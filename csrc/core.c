/*
 * core.c -- module entry for vercel.marketplace.core: the native half of the
 * client.  Each concern registers itself (schema, codec, session, batches,
 * ids, process, redaction); this file only assembles the table, the version
 * strings and the one shape of a userdata class.
 */
#include <curl/curl.h>

#include "core.h"
#include "process.h"
#include "redact.h"

#if defined(__GNUC__)
#define MP_EXPORT __attribute__((visibility("default")))
#else
#define MP_EXPORT
#endif

MP_EXPORT int luaopen_vercel_marketplace_core(lua_State *L);

void mp_register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *fields) {
  if (luaL_newmetatable(L, name)) {
    mp_setfuncs(L, meta, 0);
    lua_newtable(L);
    mp_setfuncs(L, fields, 0);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name); /* 5.1 and LuaJIT do not set it themselves */
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

int luaopen_vercel_marketplace_core(lua_State *L) {
  /* Reference-counted by libcurl itself, so loading the module twice (two
   * lua_States) is fine; we never call curl_global_cleanup from a finalizer. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return luaL_error(L, "vercel.marketplace.core: curl_global_init failed");
  lua_newtable(L);
  mp_open_schema(L);
  mp_open_codec(L);
  mp_open_answer(L);
  mp_open_session(L);
  mp_open_multi(L);
  mp_open_ids(L);
  mp_open_process(L);
  mp_open_redact(L);
  lua_pushliteral(L, MP_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "CURL_VERSION");
  return 1;
}
