/*
 * multi.c -- batches: one libcurl multi handle driving a fixed set of easy
 * handles ("slots"), so that up to N requests of an installation are in
 * flight at once, multiplexed over HTTP/2 when the server offers it.
 *
 * The userdata only moves bytes: Lua (lua/vercel/marketplace/batch.lua)
 * decides what to send in which slot, when to wait and what to retry, and
 * calls the user's progress callback between steps -- never from inside
 * libcurl, whose callbacks here only fill C buffers.
 *
 *   local m = core.multi(session, n)      -- settings copied from the session
 *   m:start(slot, method, url [, body])   -- slot in 1..n, idle
 *   local done, k = m:poll(seconds [, t]) -- the k slots whose transfer ended, in t
 *                                         -- (reused, so a batch makes no garbage) or
 *                                         -- a new array
 *   m:result(slot)                        -- what session:perform returns; idle again
 *   m:close()                             -- also __gc and __close
 */
#include <string.h>

#include "core.h"
#include "transport.h"

#define MULTI_MT "vercel.marketplace.multi"
#define MAX_SLOTS 256

enum { IDLE, RUNNING, DONE };

typedef struct slot {
  CURL *easy;
  mp_answer ans;
  mp_buf req; /* a copy of the request body: ours until the transfer ends */
  CURLcode rc;
  int state;
} slot;

typedef struct multi {
  CURLM *m;
  mp_conf conf;
  int n;
  slot slots[]; /* n of them, allocated with the userdata */
} multi;

/* ---------------------------------------------------------------- lifecycle */

static multi *check_multi(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  if (mu->m == NULL) luaL_error(L, "attempt to use a closed batch");
  return mu;
}

static void slot_free(CURLM *m, slot *s) {
  if (s->easy != NULL) {
    if (s->state == RUNNING && m != NULL) curl_multi_remove_handle(m, s->easy);
    curl_easy_cleanup(s->easy);
  }
  s->easy = NULL;
  s->state = IDLE;
  mp_buf_free(&s->ans.body);
  mp_buf_free(&s->req);
}

/* One idempotent close for close(), __gc and __close: transfers still in
 * flight are abandoned (their connections closed). */
static int multi_close(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  int i;
  for (i = 0; i < mu->n; i++) slot_free(mu->m, &mu->slots[i]);
  if (mu->m != NULL) curl_multi_cleanup(mu->m);
  mu->m = NULL;
  mp_conf_free(&mu->conf);
  return 0;
}

static int multi_tostring(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  lua_pushfstring(L, "%s (%s, %d slots)", MULTI_MT, mu->m ? "open" : "closed", mu->n);
  return 1;
}

static int slot_init(multi *mu, slot *s) {
  if ((s->easy = curl_easy_init()) == NULL) return 0;
  mp_easy_setup(s->easy, &mu->conf, &s->ans);
  curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (void *)s);
  return 1;
}

/* core.multi(session, n) -> a batch handle with n slots, sending with the
 * session's settings (token, timeouts, CA, user agent).  Misuse raises. */
static int multi_new(lua_State *L) {
  const mp_conf *conf = mp_session_conf(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  multi *mu;
  int i;
  luaL_argcheck(L, n >= 1 && n <= MAX_SLOTS, 2, "concurrency must be between 1 and 256");
  /* Create closed, then acquire: an error below leaves nothing to leak. */
  mu = (multi *)mp_newuserdata(L, sizeof(multi) + (size_t)n * sizeof(slot));
  memset(mu, 0, sizeof(multi) + (size_t)n * sizeof(slot));
  luaL_getmetatable(L, MULTI_MT);
  lua_setmetatable(L, -2);
  mu->n = (int)n;
  if (!mp_conf_copy(&mu->conf, conf)) return luaL_error(L, "not enough memory");
  if ((mu->m = curl_multi_init()) == NULL) return luaL_error(L, "curl_multi_init failed");
  curl_multi_setopt(mu->m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  for (i = 0; i < mu->n; i++)
    if (!slot_init(mu, &mu->slots[i])) return luaL_error(L, "curl_easy_init failed");
  return 1;
}

/* ---------------------------------------------------------------- steps */

static slot *check_slot(lua_State *L, multi *mu, int arg, int state) {
  lua_Integer i = luaL_checkinteger(L, arg);
  slot *s;
  luaL_argcheck(L, i >= 1 && i <= mu->n, arg, "no such slot");
  s = &mu->slots[i - 1];
  if (s->state != state)
    luaL_argerror(L, arg, state == IDLE ? "slot is busy" : "slot has no finished transfer");
  return s;
}

/* m:start(slot, method, url [, body]): the body is copied, so the caller's
 * string need not outlive the call. */
static int multi_start(lua_State *L) {
  multi *mu = check_multi(L);
  slot *s = check_slot(L, mu, 2, IDLE);
  const char *method = mp_check_method(L, 3);
  const char *url = mp_check_url(L, 4);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 5, NULL, &len);
  CURLMcode mc;
  s->req.len = 0;
  if (body != NULL && !mp_buf_add(&s->req, body, len)) return luaL_error(L, "not enough memory");
  mp_answer_reset(&s->ans);
  mp_easy_request(s->easy, &mu->conf, method, url, body == NULL ? NULL : len ? s->req.data : "", len);
  /* Over TLS, wait for the first connection to learn (by ALPN) whether it
   * speaks HTTP/2 and multiplex on it, rather than open n connections at
   * once.  Plain HTTP never multiplexes here, and waiting would hold every
   * request behind the first answer -- until their timeout, unsent. */
  curl_easy_setopt(s->easy, CURLOPT_PIPEWAIT, strncmp(url, "https:", 6) == 0 ? 1L : 0L);
  if ((mc = curl_multi_add_handle(mu->m, s->easy)) != CURLM_OK)
    return luaL_error(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  s->state = RUNNING;
  return 0;
}

/* Move every finished transfer to DONE and store its slot number in the
 * table on top of the stack, after the k already there; returns the new k. */
static int collect(lua_State *L, multi *mu, int k) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(mu->m, &left)) != NULL) {
    slot *s = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    s->rc = msg->data.result; /* read before the handle is removed */
    curl_multi_remove_handle(mu->m, s->easy);
    s->state = DONE;
    lua_pushinteger(L, (lua_Integer)(s - mu->slots) + 1);
    lua_rawseti(L, -2, ++k);
  }
  return k;
}

static void perform(lua_State *L, multi *mu) {
  int running;
  CURLMcode mc = curl_multi_perform(mu->m, &running);
  if (mc != CURLM_OK) luaL_error(L, "curl_multi_perform: %s", curl_multi_strerror(mc));
}

/* Return the array on top of the stack with its k slots (nil after them). */
static int push_done(lua_State *L, int k) {
  lua_pushnil(L);
  lua_rawseti(L, -2, k + 1);
  lua_pushinteger(L, k);
  return 2;
}

/* m:poll([seconds [, t]]) -> t (or a new array) holding the k slots whose
 * transfer ended, and k (maybe 0), waiting up to `seconds` (default 0) for
 * one when none has. */
static int multi_poll(lua_State *L) {
  multi *mu = check_multi(L);
  double secs = luaL_optnumber(L, 2, 0);
  int k;
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_createtable(L, mu->n, 0);
  } else {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
  }
  perform(L, mu);
  k = collect(L, mu, 0);
  if (k > 0 || !(secs > 0)) return push_done(L, k);
  curl_multi_poll(mu->m, NULL, 0, secs > 3600 ? 3600000 : (int)(secs * 1000.0 + 0.5), NULL);
  perform(L, mu);
  return push_done(L, collect(L, mu, 0));
}

/* m:result(slot) -> status, body, meta | nil, kind, message, retryable, as
 * session:perform; the slot is idle again. */
static int multi_result(lua_State *L) {
  multi *mu = check_multi(L);
  slot *s = check_slot(L, mu, 2, DONE);
  int n = mp_push_answer(L, s->easy, &mu->conf, &s->ans, s->rc);
  s->state = IDLE;
  mp_buf_trim(&s->req, MP_KEEP_BUFFER);
  mp_buf_trim(&s->ans.body, MP_KEEP_BUFFER);
  return n;
}

static const luaL_Reg multi_methods[] = {{"start", multi_start},
                                         {"poll", multi_poll},
                                         {"result", multi_result},
                                         {"close", multi_close},
                                         {NULL, NULL}};

static const luaL_Reg multi_meta[] = {
    {"__gc", multi_close}, {"__close", multi_close}, {"__tostring", multi_tostring}, {NULL, NULL}};

void mp_open_multi(lua_State *L) {
  mp_register_class(L, MULTI_MT, multi_meta, multi_methods);
  lua_pushcfunction(L, multi_new);
  lua_setfield(L, -2, "multi");
}
