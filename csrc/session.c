/*
 * session.c -- where a request is sent: one libcurl easy handle per
 * installation (so its connection is kept alive and reused), wrapped in a
 * "vercel.marketplace.session" userdata.  One attempt per call: the retry
 * policy lives in Lua (lua/vercel/marketplace/retry.lua) so that the nginx
 * cosocket transport shares it.
 *
 *   local s = core.session{token=, user_agent=, timeout=, connect_timeout=,
 *                          ca_file=, ca_path=, max_response_size=}
 *   s:perform(method, url [, body [, limit]])  -- one attempt (easy.h)
 *   s:redact(text [, secrets])                 -- the token cut out, also once closed
 *   s:close()                                  -- also __gc and __close
 *
 * A session is used only by the process that opened it: after a fork the
 * child drops the inherited connections unused (process.h) and starts afresh.
 * It is busy while a request is being made and answered: a finalizer that
 * runs meanwhile (any allocation can run one) cannot close it under the call
 * -- the close waits for the call's end -- nor start another request on it.
 */
#include <string.h>

#include <curl/curl.h>

#include "core.h"
#include "easy.h"
#include "redact.h"
#include "session.h"

#define SESSION_MT "vercel.marketplace.session"
/* An easy handle keeps up to 5 connections (CURLOPT_MAXCONNECTS), and a
 * happy-eyeballs connect opens two sockets at once. */
#define SESSION_SOCKETS 16
#define BUSY_MESSAGE "installation busy: a request on it is in progress (called again from a finalizer or callback)"

typedef struct session {
  CURL *easy;
  mp_conf conf;
  mp_answer ans;
  mp_sockets socks;
  curl_socket_t fds[SESSION_SOCKETS];
  CURLcode rc;       /* how the last transfer ended */
  mp_busy busy;
} session;


/* In a child forked since the handle was made, the inherited connections
 * are made harmless before libcurl closes them -- or, were some untracked,
 * the handle is leaked: a leak in a child beats a TLS close_notify written
 * into the parent's stream. */
static void session_free(session *s) {
  int leak = s->easy != NULL && mp_sockets_inherited(&s->socks) && !mp_sockets_disown(&s->socks);
  if (s->easy != NULL && !leak) curl_easy_cleanup(s->easy);
  s->easy = NULL;
  mp_buf_free(&s->ans.body);
}

/* One idempotent close for close(), __close and __gc.  While a call is busy
 * with the session, close() only marks it: the call closes it on its way
 * out.  __gc cannot come while busy (the call holds the session on its
 * stack) and always frees. */
static int session_close(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
  if (s->busy.busy) s->busy.close_pending = 1;
  else session_free(s);
  return 0;
}

/* The settings (the token among them) live until __gc: a closed session
 * still redacts what an error or a log line made after its close shows. */
static int session_gc(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
  session_free(s);
  mp_conf_free(&s->conf);
  return 0;
}

static int session_tostring(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
  lua_pushfstring(L, "%s (%s)", SESSION_MT, s->easy ? "open" : "closed");
  return 1;
}

static int session_handle(session *s) {
  if ((s->easy = curl_easy_init()) == NULL) return 0;
  mp_sockets_init(&s->socks, s->fds, SESSION_SOCKETS);
  mp_easy_setup(s->easy, &s->conf, &s->ans, &s->socks);
  return 1;
}

/* core.session{token=, user_agent=, timeout=, connect_timeout=, ca_file=,
 * ca_path=, max_response_size=} -> session.  Misuse raises. */
static int session_new(lua_State *L) {
  session *s;
  luaL_checktype(L, 1, LUA_TTABLE);
  /* Create closed, then acquire: an error below leaves nothing to leak. */
  s = (session *)mp_newuserdata(L, sizeof(session));
  memset(s, 0, sizeof *s);
  luaL_getmetatable(L, SESSION_MT);
  lua_setmetatable(L, -2);
  mp_conf_read(L, 1, &s->conf);
  if (!session_handle(s)) return luaL_error(L, "curl_easy_init failed");
  return 1;
}

/* In a child forked since the handle was made: leave the parent's
 * connections and TLS sessions alone (session_free) and start on a handle of
 * our own. */
static void session_after_fork(lua_State *L, session *s) {
  session_free(s);
  if (!session_handle(s)) luaL_error(L, "curl_easy_init failed");
}

/* The session at 1, open, idle and owned by this process, marked busy:
 * called after everything the call allocates up front (mp_busy_push). */
static session *enter_session(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
  if (s->easy == NULL || s->busy.close_pending) luaL_error(L, "attempt to use a closed session");
  if (s->busy.busy) luaL_error(L, BUSY_MESSAGE);
  if (mp_sockets_inherited(&s->socks)) session_after_fork(L, s);
  s->busy.busy = 1;
  return s;
}

static void free_session(void *s) { session_free((session *)s); }

/* The settings of a session, for the batch handles made from it (multi.c). */
const mp_conf *mp_session_conf(lua_State *L, int idx) {
  session *s = (session *)luaL_checkudata(L, idx, SESSION_MT);
  if (s->easy == NULL || s->busy.close_pending) luaL_error(L, "attempt to use a closed session");
  return &s->conf;
}

static int push_answer(lua_State *L) {
  session *s = (session *)lua_touserdata(L, 1);
  return mp_push_answer(L, s->easy, &s->ans, s->rc);
}

/* session:perform(method, url [, body [, limit]]) ->
 *   status, body, meta  |  nil, "timeout"|"transport"|"interrupted", message, retryable, sent
 * limit: how many requests the call may send (libcurl resends by itself
 * when a kept-alive connection fails); default any.  The arguments are
 * checked before the session is marked busy: a raised error leaves it idle. */
static int session_perform(lua_State *L) {
  const char *method = mp_check_method(L, 2);
  const char *url = mp_check_url(L, 3);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 4, NULL, &len); /* pinned on the stack */
  int limit = mp_check_limit(L, 5);
  session *s;
  mp_busy_push(L, push_answer, 1);
  s = enter_session(L);
  mp_answer_reset(&s->ans, limit);
  mp_easy_request(s->easy, &s->conf, method, url, body, len);
  s->rc = curl_easy_perform(s->easy);
  return mp_busy_run(L, &s->busy, 1, free_session, s);
}

/* session:redact(text [, secrets]) -> text without the session's token (and
 * the strings of the array secrets), open or closed: see core.redact. */
/* Not a busy call: it touches no libcurl handle, and the token it reads
 * lives until __gc, which cannot come while the session is an argument. */
static int session_redact(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
  size_t tlen = 0;
  const char *token = NULL;
  luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  if (s->conf.hdr_plain != NULL) token = mp_conf_token(&s->conf, &tlen);
  return mp_redact(L, 2, token, tlen, 0, lua_isnoneornil(L, 3) ? 0 : 3);
}

static const luaL_Reg session_methods[] = {
    {"perform", session_perform}, {"redact", session_redact}, {"close", session_close}, {NULL, NULL}};

static const luaL_Reg session_meta[] = {{"__gc", session_gc},
                                        {"__close", session_close},
                                        {"__tostring", session_tostring},
                                        {NULL, NULL}};

void mp_open_session(lua_State *L) {
  mp_register_class(L, SESSION_MT, session_meta, session_methods);
  lua_pushcfunction(L, session_new);
  lua_setfield(L, -2, "session");
}
