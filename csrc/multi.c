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
 *   m:start(slot, method, url [, body [, limit]])  -- slot in 1..n, idle;
 *                                         -- limit as for session:perform
 *   local done, k = m:poll(seconds [, t]) -- the k slots whose transfer ended, in t
 *                                         -- (reused, so a batch makes no garbage) or
 *                                         -- a new array
 *   m:result(slot)                        -- what session:perform returns; idle again
 *   m:close()                             -- also __gc and __close
 *
 * As a session, a batch handle serves only the process that opened it (a
 * forked child gets an error, and its close leaves the parent's connections
 * alone), and it is busy while poll or result runs: a finalizer that closes
 * it meanwhile is deferred to the call's end, one that calls it is refused.
 * A trapped SIGINT (core.trap_interrupt) ends its transfers ("interrupted")
 * and its poll at once.
 */
#include <string.h>

#include "core.h"
#include "easy.h"
#include "session.h"

#define MULTI_MT "vercel.marketplace.multi"
#define MAX_SLOTS 256
/* A multi handle keeps up to 4 connections per easy handle. */
#define SOCKETS_PER_SLOT 5
#define BUSY_MESSAGE "batch busy: a call on it is in progress (called again from a finalizer or callback)"

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
  mp_sockets socks;
  mp_busy busy;
  int n;
  slot slots[]; /* n of them, then the socket numbers: one allocation */
} multi;

/* ---------------------------------------------------------------- lifecycle */

/* The batch at 1, open, idle and this process's.  Called once the call's
 * arguments are checked and what it allocates up front is done: an
 * allocation may run a finalizer that closes the batch. */
static multi *check_multi(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  if (mu->m == NULL || mu->busy.close_pending) luaL_error(L, "attempt to use a closed batch");
  if (mu->busy.busy) luaL_error(L, BUSY_MESSAGE);
  if (mp_sockets_inherited(&mu->socks))
    luaL_error(L, "batch handle used in a process it was not opened in (after fork)");
  return mu;
}

static multi *to_multi(lua_State *L) { return (multi *)luaL_checkudata(L, 1, MULTI_MT); }

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

/* Transfers still in flight are abandoned (their connections closed).  In a
 * forked child the inherited sockets are made harmless first, or the whole
 * handle is leaked when some were not tracked. */
static void multi_free(multi *mu) {
  int i, leak = mu->m != NULL && mp_sockets_inherited(&mu->socks) && !mp_sockets_disown(&mu->socks);
  if (!leak) {
    for (i = 0; i < mu->n; i++) slot_free(mu->m, &mu->slots[i]);
    if (mu->m != NULL) curl_multi_cleanup(mu->m);
  }
  mu->m = NULL;
  mp_conf_free(&mu->conf);
}

/* One idempotent close for close(), __close and __gc; close() while busy
 * is done when the busy call ends. */
static int multi_close(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  if (mu->busy.busy) mu->busy.close_pending = 1;
  else multi_free(mu);
  return 0;
}

static int multi_gc(lua_State *L) {
  multi_free((multi *)luaL_checkudata(L, 1, MULTI_MT));
  return 0;
}

static int multi_tostring(lua_State *L) {
  multi *mu = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  lua_pushfstring(L, "%s (%s, %d slots)", MULTI_MT, mu->m ? "open" : "closed", mu->n);
  return 1;
}

static int slot_init(multi *mu, slot *s) {
  if ((s->easy = curl_easy_init()) == NULL) return 0;
  mp_easy_setup(s->easy, &mu->conf, &s->ans, &mu->socks);
  curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (void *)s);
  return 1;
}

/* core.multi(session, n) -> a batch handle with n slots, sending with the
 * session's settings (token, timeouts, CA, user agent).  Misuse raises. */
static int multi_new(lua_State *L) {
  const mp_conf *conf = mp_session_conf(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  multi *mu;
  size_t size;
  int i;
  luaL_argcheck(L, n >= 1 && n <= MAX_SLOTS, 2, "concurrency must be between 1 and 256");
  size = sizeof(multi) + (size_t)n * (sizeof(slot) + SOCKETS_PER_SLOT * sizeof(curl_socket_t));
  /* Create closed, then acquire: an error below leaves nothing to leak. */
  mu = (multi *)mp_newuserdata(L, size);
  memset(mu, 0, size);
  luaL_getmetatable(L, MULTI_MT);
  lua_setmetatable(L, -2);
  mu->n = (int)n;
  mp_sockets_init(&mu->socks, (curl_socket_t *)(void *)&mu->slots[n], (int)n * SOCKETS_PER_SLOT);
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

/* m:start(slot, method, url [, body [, limit]]): the body is copied, so the
 * caller's string need not outlive the call. */
static int multi_start(lua_State *L) {
  const char *method = mp_check_method(L, 3);
  const char *url = mp_check_url(L, 4); /* converting a number allocates */
  size_t len = 0;
  const char *body = luaL_optlstring(L, 5, NULL, &len);
  int limit = mp_check_limit(L, 6);
  multi *mu = check_multi(L);
  slot *s = check_slot(L, mu, 2, IDLE);
  CURLMcode mc;
  s->req.len = 0;
  if (body != NULL && !mp_buf_add(&s->req, body, len)) return luaL_error(L, "not enough memory");
  mp_answer_reset(&s->ans, limit);
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

static void free_multi(void *mu) { multi_free((multi *)mu); }

/* The busy part of poll: the arguments are checked, the array is at 3. */
static int poll_busy(lua_State *L) {
  multi *mu = (multi *)lua_touserdata(L, 1);
  double secs = lua_tonumber(L, 2);
  int k;
  perform(L, mu);
  k = collect(L, mu, 0);
  if (k > 0 || !(secs > 0) || mp_interrupted()) return push_done(L, k);
  curl_multi_poll(mu->m, NULL, 0, secs > 3600 ? 3600000 : (int)(secs * 1000.0 + 0.5), NULL);
  perform(L, mu);
  return push_done(L, collect(L, mu, 0));
}

/* m:poll([seconds [, t]]) -> t (or a new array) holding the k slots whose
 * transfer ended, and k (maybe 0), waiting up to `seconds` (default 0) for
 * one when none has.  A trapped SIGINT ends the wait. */
static int multi_poll(lua_State *L) {
  multi *mu = to_multi(L);
  double secs = luaL_optnumber(L, 2, 0);
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) {
    lua_createtable(L, mu->n, 0);
    lua_replace(L, 3);
  } else {
    luaL_checktype(L, 3, LUA_TTABLE);
  }
  lua_pushnumber(L, secs);
  lua_replace(L, 2);
  mp_busy_push(L, poll_busy, 3);
  check_multi(L)->busy.busy = 1;
  return mp_busy_run(L, &mu->busy, 3, free_multi, mu);
}

static int result_busy(lua_State *L) {
  multi *mu = (multi *)lua_touserdata(L, 1);
  slot *s = &mu->slots[lua_tointeger(L, 2) - 1];
  int n = mp_push_answer(L, s->easy, &s->ans, s->rc);
  s->state = IDLE;
  mp_buf_trim(&s->req, MP_KEEP_BUFFER);
  mp_buf_trim(&s->ans.body, MP_KEEP_BUFFER);
  return n;
}

/* m:result(slot) -> status, body, meta | nil, kind, message, retryable, sent,
 * as session:perform; the slot is idle again. */
static int multi_result(lua_State *L) {
  multi *mu = to_multi(L);
  luaL_checkinteger(L, 2);
  lua_settop(L, 2);
  mp_busy_push(L, result_busy, 2);
  check_slot(L, check_multi(L), 2, DONE);
  mu->busy.busy = 1;
  return mp_busy_run(L, &mu->busy, 2, free_multi, mu);
}

static const luaL_Reg multi_methods[] = {{"start", multi_start},
                                         {"poll", multi_poll},
                                         {"result", multi_result},
                                         {"close", multi_close},
                                         {NULL, NULL}};

static const luaL_Reg multi_meta[] = {
    {"__gc", multi_gc}, {"__close", multi_close}, {"__tostring", multi_tostring}, {NULL, NULL}};

void mp_open_multi(lua_State *L) {
  mp_register_class(L, MULTI_MT, multi_meta, multi_methods);
  lua_pushcfunction(L, multi_new);
  lua_setfield(L, -2, "multi");
}
