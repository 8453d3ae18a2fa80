/*
 * ids.c -- a resource or installation id as one path segment of a URL:
 * core.escape_id(id [, before [, after]]) -> before..escaped..after, or nil
 * and what is wrong with the id.
 */
#include <string.h>

#include "core.h"
#include "encode.h"

/* Percent-encode like JavaScript's encodeURIComponent. */
static int is_unreserved(unsigned char c) {
  /* ASCII ranges, not isalnum: in a single-byte locale (os.setlocale) isalnum
   * accepts bytes past 0x7F, which would then be sent unescaped. */
  int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return alnum || (c != '\0' && strchr("-_.!~*'()", c) != NULL);
}

static const char *id_problem(const char *id, size_t len) {
  size_t i;
  if (len == 0) return "must not be empty";
  if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.'))
    return "must not be '.' or '..'";
  for (i = 0; i < len; i++)
    if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) return "must not contain control characters";
  if (!mp_utf8_valid(id, len)) return "is not valid UTF-8";
  return NULL;
}

/* core.escape_id(id [, before [, after]]) -> before..escaped..after | nil,
 * message.  The affixes make a request's URL in one string, not three.  A
 * non-string id raises. */
static int escape_id(lua_State *L) {
  static const char hex[] = "0123456789ABCDEF";
  size_t len, i, blen = 0, alen = 0;
  const char *id, *problem, *before, *after;
  luaL_Buffer b;
  if (lua_type(L, 1) != LUA_TSTRING) return luaL_argerror(L, 1, "resource id must be a string");
  id = lua_tolstring(L, 1, &len);
  before = luaL_optlstring(L, 2, "", &blen);
  after = luaL_optlstring(L, 3, "", &alen);
  if ((problem = id_problem(id, len)) != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, problem);
    return 2;
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, before, blen);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (is_unreserved(c)) {
      luaL_addchar(&b, (char)c);
    } else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hex[c >> 4]);
      luaL_addchar(&b, hex[c & 15]);
    }
  }
  luaL_addlstring(&b, after, alen);
  luaL_pushresult(&b);
  return 1;
}

void mp_open_ids(lua_State *L) {
  lua_pushcfunction(L, escape_id);
  lua_setfield(L, -2, "escape_id");
}
