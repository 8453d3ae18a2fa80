/*
 * core.c -- module entry for vercel.marketplace.core: the native half of the
 * client.  Each concern registers itself (schema, codec, transport); this file
 * only assembles the table and the version strings.
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

int luaopen_vercel_marketplace_core(lua_State *L) {
  /* Reference-counted by libcurl itself, so loading the module twice (two
   * lua_States) is fine; we never call curl_global_cleanup from a finalizer. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return luaL_error(L, "vercel.marketplace.core: curl_global_init failed");
  lua_newtable(L);
  mp_open_schema(L);
  mp_open_codec(L);
  mp_open_transport(L);
  mp_open_process(L);
  mp_open_redact(L);
  lua_pushliteral(L, MP_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "CURL_VERSION");
  return 1;
}
