/*
 * transport.h -- what the one-at-a-time session (transport.c) and the batch
 * multi handle (multi.c) share: the settings every easy handle is set up
 * with, the answer a transfer collects, and how an answer reaches Lua.  Both
 * sides thus send byte-identical requests and read answers the same way.
 */
#ifndef MP_TRANSPORT_H
#define MP_TRANSPORT_H

#include <curl/curl.h>

#include "buffer.h"
#include "compat.h"

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
  char request_id[128];
  char content_type[128];
  char errbuf[CURL_ERROR_SIZE];
} mp_answer;

/* Read core.session's settings table at index t into c (zeroed, inside a
 * userdata whose close calls mp_conf_free).  Misuse raises. */
void mp_conf_read(lua_State *L, int t, mp_conf *c);
/* A deep copy (header lists included); 0 when memory ran out. */
int mp_conf_copy(mp_conf *dst, const mp_conf *src);
void mp_conf_free(mp_conf *c);

/* Options that hold for every request of a handle. */
void mp_easy_setup(CURL *e, const mp_conf *c, mp_answer *a);
/* Options of one request; body (may be NULL) must outlive the transfer. */
void mp_easy_request(CURL *e, const mp_conf *c, const char *method, const char *url,
                     const char *body, size_t len);

void mp_answer_reset(mp_answer *a);
/* Push what session:perform returns for a transfer that ended with rc, sent
 * with conf (an error answer has the token cut out):
 * status, body, meta (3) or nil, kind, message, retryable (4). */
int mp_push_answer(lua_State *L, CURL *e, const mp_conf *conf, mp_answer *a, CURLcode rc);

/* Argument checks shared by perform and start: the method, and a URL that
 * holds no spaces, CR, LF or NUL.  Misuse raises. */
const char *mp_check_method(lua_State *L, int arg);
const char *mp_check_url(lua_State *L, int arg);

/* The settings of the session userdata at idx (raises when it is none or
 * closed): batch handles copy them (transport.c). */
const mp_conf *mp_session_conf(lua_State *L, int idx);

/* Adds core.multi to the module table on top of the stack (multi.c). */
void mp_open_multi(lua_State *L);

/* The metatable `name` (registry) with metamethods `meta`, the functions `fields` as its
 * __index and __name set: one shape for the session and batch userdata. */
void mp_register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *fields);

/* The response buffer kept between requests; a larger one is freed. */
#define MP_KEEP_BUFFER (1024 * 1024)

MP_END_INTERNAL

#endif /* MP_TRANSPORT_H */
