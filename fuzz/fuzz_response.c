/*
 * fuzz_response.c -- answer bytes through vercel.marketplace.response
 * (decode_object, http_error, failure, value) and core.integerize; the checks
 * are in fuzz/response_check.lua.
 *
 * Input: one byte choosing the status, one byte of flags for the answer's
 * meta (request id, Retry-After), then the body as received.
 */
#include "fuzz_common.h"

static const int statuses[] = {200, 201, 204, 301, 308, 400, 401, 403, 404, 409,
                               410, 422, 429, 500, 502, 503, 504, 418, 599, 100};
#define NSTATUS (sizeof statuses / sizeof statuses[0])

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int status = size > 0 ? statuses[data[0] % NSTATUS] : 200;
  int flags = size > 1 ? data[1] : 0;
  size_t skip = size > 2 ? 2 : size;
  if (L == NULL) L = fuzz_state("response_check.lua");
  lua_settop(L, 0);
  lua_pushinteger(L, status);
  lua_pushlstring(L, (const char *)data + skip, size - skip);
  lua_pushinteger(L, flags);
  fuzz_check(L, 3);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
