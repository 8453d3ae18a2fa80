/*
 * easy.h -- what the one-at-a-time session (session.c) and the batch multi
 * handle (multi.c) share (easy.c): the settings every easy handle is set up
 * with, the answer a transfer collects, and how an answer reaches Lua.  Both
 * sides thus send byte-identical requests and read answers the same way.
 */
#ifndef MP_EASY_H
#define MP_EASY_H

#include <curl/curl.h>

#include "buffer.h"
#include "compat.h"
#include "process.h"

MP_BEGIN_INTERNAL

/* Settings of an installation's requests.  The strings are our own copies,
 * freed by mp_conf_free from the owning userdata's close; the token lives
 * only inside the two header lists. */
typedef struct mp_conf {
  struct curl_slist *hdr_plain; /* Authorization, Accept, Expect */
  struct curl_slist *hdr_json;  /* the same plus Content-Type */
  char *user_agent, *ca_file, *ca_path;
  size_t max_response;
  long timeout_ms, connect_timeout_ms;
} mp_conf;

/* What one transfer collects: the body (bounded) and the headers we read. */
typedef struct mp_answer {
  mp_buf body;
  size_t max_response;
  int too_large;
  double retry_after; /* seconds; < 0 when the answer named none */
  double retry_after_ms;
  int sent;            /* requests that left: libcurl resends on its own after a
                          kept-alive connection fails, and the server may have
                          acted on the first one */
  int refused;         /* a resend was refused: the limit was reached */
  int limit;           /* requests this transfer may send (0: any); past
                          it libcurl's resend is refused, so retries bound
                          what the server receives */
  const char *token;   /* the conf's, cut from error bodies */
  size_t token_len;
  char request_id[1024]; /* raw; "" when longer: response.request_id redacts it */
  char content_type[128];
  char errbuf[CURL_ERROR_SIZE];
} mp_answer;

/* Read core.session's settings table at index t into c (zeroed, inside a
 * userdata whose close calls mp_conf_free).  Misuse raises. */
void mp_conf_read(lua_State *L, int t, mp_conf *c);
/* A deep copy (header lists included); 0 when memory ran out. */
int mp_conf_copy(mp_conf *dst, const mp_conf *src);
void mp_conf_free(mp_conf *c);

/* Options that hold for every request of a handle; its sockets are
 * tracked in socks (the owner's, for fork safety). */
void mp_easy_setup(CURL *e, const mp_conf *c, mp_answer *a, mp_sockets *socks);
/* Options of one request; body (may be NULL) must outlive the transfer. */
void mp_easy_request(CURL *e, const mp_conf *c, const char *method, const char *url,
                     const char *body, size_t len);

/* Ready for a new transfer that may send `limit` requests (0: any). */
void mp_answer_reset(mp_answer *a, int limit);
/* The optional request limit argument at arg (nil: any; else 1 or more). */
int mp_check_limit(lua_State *L, int arg);
/* Push what session:perform returns for a transfer that ended with rc, sent
 * with conf (an error answer has the token cut out):
 * status, body, meta (3) or nil, kind, message, retryable, sent (5). */
int mp_push_answer(lua_State *L, CURL *e, mp_answer *a, CURLcode rc);

/* Argument checks shared by perform and start: the method, and a URL that
 * holds no spaces, CR, LF or NUL.  Misuse raises. */
const char *mp_check_method(lua_State *L, int arg);
const char *mp_check_url(lua_State *L, int arg);

/* The token of a conf, as sent after "Bearer ". */
const char *mp_conf_token(const mp_conf *c, size_t *len);

/* A handle in use.  While a call works with it, any allocation may run a
 * finalizer, and a finalizer may do anything: close() then only marks it
 * (close_pending) and another call on it is refused. */
typedef struct mp_busy {
  int busy, close_pending;
} mp_busy;

/* A busy call in three steps, so that nothing allocates between checking a
 * handle and marking it busy (on 5.1 and LuaJIT pushing a function
 * allocates, and a finalizer run then may close the handle or raise):
 *   mp_busy_push(L, f, nargs)   f and the call's first nargs arguments;
 *   check the handle (open, idle, this process's), set b->busy, do the work
 *                               that allocates nothing Lua owns (a transfer);
 *   return mp_busy_run(...)     f run protected -- an error inside, memory or
 *                               a finalizer's own (which Lua 5.1 to 5.3 pass
 *                               on to whatever allocated), must not leave the
 *                               handle busy for ever -- then busy cleared, a
 *                               close() asked meanwhile done (close(owner)),
 *                               and f's results returned (or its error raised). */
void mp_busy_push(lua_State *L, lua_CFunction f, int nargs);
int mp_busy_run(lua_State *L, mp_busy *b, int nargs, void (*close)(void *), void *owner);

/* The response buffer kept between requests; a larger one is freed. */
#define MP_KEEP_BUFFER (1024 * 1024)

MP_END_INTERNAL

#endif /* MP_EASY_H */
