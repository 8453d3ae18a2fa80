/*
 * easy.c -- one libcurl easy handle, as sessions (session.c) and batches
 * (multi.c) both use it: the settings every handle is set up with, the
 * options of one request, the callbacks that capture an answer, and how an
 * answer (or a failure, classified here once) reaches Lua.  Both sides thus
 * send byte-identical requests and read answers the same way.  Also the
 * busy protocol both handle types follow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "core.h"
#include "easy.h"
#include "redact.h"

#define DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)
#define CA_CACHE_SECONDS (24L * 60 * 60)

/* ---------------------------------------------------------------- callbacks */

/* Enforce the size limit here: libcurl's MAXFILESIZE does not stop a chunked
 * body whose length is not announced. */
static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  mp_answer *a = (mp_answer *)ud;
  size_t len = size * n;
  if (len > a->max_response - a->body.len) {
    a->too_large = 1;
    return 0;
  }
  return mp_buf_add(&a->body, data, len) ? len : 0;
}

/* Copy a header value without its trailing CR/LF, truncated to fit.  Only
 * printable ASCII is kept (others become '?'): these values end up in error
 * messages and log lines, where a hostile server must not inject lines. */
/* n without the value's trailing CR, LF, blanks and tabs. */
static size_t trimmed(const char *v, size_t n) {
  while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  return n;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n) {
  size_t i;
  n = trimmed(v, n);
  if (n >= cap) n = cap - 1;
  for (i = 0; i < n; i++) dst[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
  dst[n] = '\0';
}

/* Whole digits (at most 12: more is no wait anyone means), or -1.  Not
 * strtod, which would also take "inf", "1e999" and "0x10". */
static double parse_digits(const char *v) {
  double n = 0;
  size_t i;
  for (i = 0; v[i] >= '0' && v[i] <= '9'; i++) n = n * 10 + (v[i] - '0');
  return i == 0 || i > 12 || v[i] != '\0' ? -1 : n;
}

/* Retry-After is either delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
static double parse_retry_after(const char *v) {
  double secs = parse_digits(v);
  time_t at;
  if (secs >= 0) return secs;
  at = curl_getdate(v, NULL);
  if (at == -1) return -1;
  secs = difftime(at, time(NULL));
  return secs > 0 ? secs : 0;
}

static int header_is(const char *line, size_t n, const char *name, size_t nlen) {
  return n > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0;
}

#define HEADER_IS(line, n, lit) header_is((line), (n), lit, sizeof(lit) - 1)

/* The headers we read; every other one is skipped before its value is
 * copied (an answer carries a handful, and this runs for each). */
enum { H_OTHER, H_REQUEST_ID, H_CONTENT_TYPE, H_RETRY_AFTER, H_RETRY_AFTER_MS };

static int header_kind(const char *line, size_t len) {
  switch (line[0] | 0x20) { /* ASCII lower case: a cheap first sieve */
    case 'x': return HEADER_IS(line, len, "x-vercel-id") ? H_REQUEST_ID : H_OTHER;
    case 'c': return HEADER_IS(line, len, "content-type") ? H_CONTENT_TYPE : H_OTHER;
    case 'r':
      if (HEADER_IS(line, len, "retry-after")) return H_RETRY_AFTER;
      return HEADER_IS(line, len, "retry-after-ms") ? H_RETRY_AFTER_MS : H_OTHER;
    default: return H_OTHER;
  }
}

/* x-vercel-id as it came, without its line end, or "" when longer than we
 * keep: its bytes are redacted in Lua (token and secrets, response.lua)
 * before anything is shortened or made printable, so that no part of an
 * echoed value survives a cut or a '?'.  NUL becomes '?' (a C string). */
static void keep_request_id(mp_answer *a, const char *v, size_t n) {
  size_t i;
  n = trimmed(v, n);
  if (n >= sizeof a->request_id) n = 0;
  for (i = 0; i < n; i++) a->request_id[i] = v[i] ? v[i] : '?';
  a->request_id[n] = '\0';
}

static size_t on_header(char *line, size_t size, size_t n, void *ud) {
  mp_answer *a = (mp_answer *)ud;
  size_t len = size * n, skip;
  int kind;
  char value[128];
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* a new response starts */
    a->request_id[0] = a->content_type[0] = '\0';
    a->retry_after = a->retry_after_ms = -1;
    return len;
  }
  if (len == 0 || (kind = header_kind(line, len)) == H_OTHER) return len;
  skip = (size_t)((const char *)memchr(line, ':', len) - line) + 1;
  while (skip < len && (line[skip] == ' ' || line[skip] == '\t')) skip++;
  if (kind == H_REQUEST_ID) {
    keep_request_id(a, line + skip, len - skip);
    return len;
  }
  copy_value(value, sizeof value, line + skip, len - skip);
  switch (kind) {
    case H_CONTENT_TYPE: memcpy(a->content_type, value, sizeof value); break;
    case H_RETRY_AFTER: a->retry_after = parse_retry_after(value); break;
    default: a->retry_after_ms = parse_digits(value) / 1000.0; /* no date form: -1 stays < 0 */
  }
  return len;
}

/* ---------------------------------------------------------------- settings */

/* CR, LF or NUL in a header value would let a caller inject headers. */
static const char *header_safe(lua_State *L, int t, const char *field, size_t *len) {
  const char *v;
  lua_getfield(L, t, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", field);
  v = lua_tolstring(L, -1, len);
  if (strlen(v) != *len || strpbrk(v, "\r\n") != NULL)
    luaL_error(L, "option '%s' must not contain CR, LF or NUL", field);
  return v; /* the string stays on the stack, so the caller's pointer lives */
}

static long opt_ms(lua_State *L, int t, const char *field, double dflt) {
  double secs;
  lua_getfield(L, t, field);
  secs = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  if (!(secs > 0 && secs < 1e6)) luaL_error(L, "option '%s' must be a positive number of seconds", field);
  /* Under half a millisecond would round to 0, which libcurl reads as
   * "no timeout at all". */
  return secs < 0.001 ? 1L : (long)(secs * 1000.0 + 0.5);
}

static char *dup_or_null(const char *s, int *ok) {
  char *d;
  if (s == NULL) return NULL;
  if ((d = (char *)malloc(strlen(s) + 1)) == NULL) {
    *ok = 0;
    return NULL;
  }
  return strcpy(d, s);
}

/* An optional string option, copied into c-owned memory. */
static char *opt_copy(lua_State *L, int t, const char *field) {
  size_t len;
  int ok = 1;
  const char *v = header_safe(L, t, field, &len);
  char *d = dup_or_null(v, &ok);
  if (v != NULL) lua_pop(L, 1);
  if (!ok) luaL_error(L, "not enough memory");
  return d;
}

/* max_response_size: whole bytes from 1 to 2 GiB - 1 (answers are held whole). */
static size_t opt_size(lua_State *L, int t, const char *field, double dflt) {
  double n;
  lua_getfield(L, t, field);
  n = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  if (!(n >= 1 && n <= 2147483647.0 && n == (double)(long)n))
    luaL_error(L, "option '%s' must be a whole number of bytes from 1 to 2 GiB", field);
  return (size_t)n;
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line, int *ok) {
  struct curl_slist *next;
  if (!*ok) return list;
  if ((next = curl_slist_append(list, line)) == NULL) *ok = 0;
  return next ? next : list;
}

#define BEARER "Authorization: Bearer "

/* Both header lists are built once: libcurl copies the strings, and the
 * token then exists only inside them (never in a Lua-visible string of ours). */
static struct curl_slist *headers(lua_State *L, int with_json, const char *token) {
  int ok = 1;
  struct curl_slist *list = NULL;
  list = slist_add(list, lua_pushfstring(L, BEARER "%s", token), &ok); /* first: push_error_body */
  lua_pop(L, 1);
  list = slist_add(list, "Accept: application/json", &ok);
  /* "Expect:" stops libcurl from waiting for 100-continue on larger bodies. */
  list = slist_add(list, "Expect:", &ok);
  if (with_json) list = slist_add(list, "Content-Type: application/json", &ok);
  if (ok) return list;
  curl_slist_free_all(list);
  return NULL;
}

void mp_conf_read(lua_State *L, int t, mp_conf *c) {
  size_t toklen = 0;
  const char *token = header_safe(L, t, "token", &toklen); /* kept on the stack */
  if (token == NULL || toklen == 0) luaL_error(L, "option 'token' is required");
  c->hdr_plain = headers(L, 0, token);
  c->hdr_json = headers(L, 1, token);
  lua_pop(L, 1);
  if (c->hdr_plain == NULL || c->hdr_json == NULL) luaL_error(L, "not enough memory");
  c->user_agent = opt_copy(L, t, "user_agent");
  c->ca_file = opt_copy(L, t, "ca_file");
  c->ca_path = opt_copy(L, t, "ca_path");
  c->timeout_ms = opt_ms(L, t, "timeout", 30);
  c->connect_timeout_ms = opt_ms(L, t, "connect_timeout", 10);
  c->max_response = opt_size(L, t, "max_response_size", DEFAULT_MAX_RESPONSE);
}

static struct curl_slist *slist_copy(const struct curl_slist *src, int *ok) {
  struct curl_slist *list = NULL;
  for (; src != NULL; src = src->next) list = slist_add(list, src->data, ok);
  return list;
}

int mp_conf_copy(mp_conf *dst, const mp_conf *src) {
  int ok = 1;
  *dst = *src;
  dst->user_agent = dup_or_null(src->user_agent, &ok);
  dst->ca_file = dup_or_null(src->ca_file, &ok);
  dst->ca_path = dup_or_null(src->ca_path, &ok);
  dst->hdr_plain = slist_copy(src->hdr_plain, &ok);
  dst->hdr_json = slist_copy(src->hdr_json, &ok);
  return ok;
}

const char *mp_conf_token(const mp_conf *c, size_t *len) {
  const char *token = c->hdr_plain->data + sizeof(BEARER) - 1;
  *len = strlen(token);
  return token;
}

void mp_conf_free(mp_conf *c) {
  curl_slist_free_all(c->hdr_plain);
  curl_slist_free_all(c->hdr_json);
  free(c->user_agent);
  free(c->ca_file);
  free(c->ca_path);
  memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- handles */

static void set_protocols(CURL *e) {
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0: the _STR forms */
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

/* Whether a CA bundle file will be used: given, or built into libcurl. */
static int has_ca_file(const mp_conf *c) {
#if LIBCURL_VERSION_NUM >= 0x074600 /* 7.70.0: cainfo in curl_version_info */
  return c->ca_file != NULL || curl_version_info(CURLVERSION_NOW)->cainfo != NULL;
#else
  return c->ca_file != NULL;
#endif
}

/* ca_file and ca_path replace the system's trust store, each alone or both
 * together: a ca_path without a ca_file drops libcurl's built-in bundle too,
 * or a server signed by any public CA would still be trusted.
 *
 * libcurl (>= 7.87, OpenSSL) keeps the parsed CA store between connections
 * only when it comes from a CA file alone: a CA directory -- which Debian's
 * libcurl sets by default next to its bundle -- turns the cache off, and
 * every new connection re-reads the ~200 KB bundle (~20 ms of CPU).  So
 * unless the caller asked for a directory, we drop the built-in one whenever
 * a bundle file is there to verify with. */
static void set_ca(CURL *e, const mp_conf *c) {
  if (c->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  else if (c->ca_path)
    curl_easy_setopt(e, CURLOPT_CAINFO, (char *)NULL);
  if (c->ca_path)
    curl_easy_setopt(e, CURLOPT_CAPATH, c->ca_path);
  else if (has_ca_file(c))
    curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
  curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, CA_CACHE_SECONDS);
#endif
}

/* Called before each request leaves, on a new connection or a kept-alive
 * one: libcurl's own resend after a kept-alive connection died is counted,
 * and refused once the caller's limit is reached (the server may have acted
 * on every request that left). */
static int on_request(void *ud, char *ip, char *local_ip, int port, int local_port) {
  mp_answer *a = (mp_answer *)ud;
  (void)ip, (void)local_ip, (void)port, (void)local_port;
  if (a->limit > 0 && a->sent >= a->limit) {
    a->refused = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  a->sent++;
  return CURL_PREREQFUNC_OK;
}

/* A trapped SIGINT ends the transfer (core.trap_interrupt). */
static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  (void)ud, (void)a, (void)b, (void)c, (void)d;
  return mp_interrupted();
}

void mp_easy_setup(CURL *e, const mp_conf *c, mp_answer *a, mp_sockets *socks) {
  a->max_response = c->max_response;
  a->token = mp_conf_token(c, &a->token_len);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a 3xx is an error */
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);     /* keep our escaped ids as sent */
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)a);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)a);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_request);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, (void *)a);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  mp_sockets_attach(e, socks);
  curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent ? c->user_agent : "vercel-marketplace-lua/" MP_VERSION);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  set_ca(e, c);
  set_protocols(e);
}

/* Method and body options are set afresh on every request: stale ones on a
 * reused handle were behind two libcurl CVEs. */
void mp_easy_request(CURL *e, const mp_conf *c, const char *method, const char *url,
                     const char *body, size_t len) {
  curl_easy_setopt(e, CURLOPT_URL, url);
  /* The progress callback only where a SIGINT can end the transfer: it costs
   * libcurl's progress bookkeeping on every request. */
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, mp_trapped() ? 0L : 1L);
  if (body == NULL) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : (char *)NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_plain);
  } else {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_json);
  }
}

/* ---------------------------------------------------------------- answers */

int mp_check_limit(lua_State *L, int arg) {
  lua_Number n;
  if (lua_isnoneornil(L, arg)) return 0;
  n = luaL_checknumber(L, arg);
  luaL_argcheck(L, n >= 1, arg, "request limit must be 1 or more");
  return n > 1000000 ? 1000000 : (int)n; /* more is "any" in practice (retries = 1e300) */
}

void mp_answer_reset(mp_answer *a, int limit) {
  a->body.len = 0;
  a->too_large = 0;
  a->errbuf[0] = a->request_id[0] = a->content_type[0] = '\0';
  a->retry_after = a->retry_after_ms = -1;
  a->sent = a->refused = 0;
  a->limit = limit;
}

static void set_meta_string(lua_State *L, const char *field, const char *v) {
  if (v[0] == '\0') return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, field);
}

/* The facts of an answer the Lua layer needs, success or not. */
static void push_meta(lua_State *L, CURL *e, const mp_answer *a) {
  double ra = a->retry_after_ms >= 0 ? a->retry_after_ms : a->retry_after;
  long connects = 0;
  lua_createtable(L, 0, 5);
  set_meta_string(L, "request_id", a->request_id);
  set_meta_string(L, "content_type", a->content_type);
  if (ra >= 0) {
    lua_pushnumber(L, ra);
    lua_setfield(L, -2, "retry_after");
  }
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
  lua_pushboolean(L, connects == 0); /* a kept-alive connection served it */
  lua_setfield(L, -2, "reused");
  lua_pushinteger(L, a->sent > 0 ? a->sent : 1);
  lua_setfield(L, -2, "sent");
}

/* Failures worth another attempt: the connection could not be made or broke
 * before a whole answer came.  Not timeouts, TLS failures or oversized bodies. */
static int retryable(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
}

/* libcurl 7.88 ends an answer whose headers pass 300 KB with a receive
 * error, which would read as a broken connection: it is the server's doing,
 * and asking again gets the same (the cosocket transport agrees). */
static int headers_too_large(const mp_answer *a) {
  return strncmp(a->errbuf, "Too large response headers", 26) == 0;
}

static int push_failure(lua_State *L, const mp_answer *a, CURLcode rc) {
  char msg[80];
  lua_pushnil(L);
  if (rc == CURLE_ABORTED_BY_CALLBACK && a->refused) {
    lua_pushliteral(L, "transport");
    lua_pushliteral(L, "connection lost before an answer; not sent again (no retries left)");
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    lua_pushliteral(L, "interrupted");
    lua_pushliteral(L, "interrupted by SIGINT");
  } else if (a->too_large) {
    lua_pushliteral(L, "transport");
    /* snprintf, not lua_pushfstring: its %I is 5.3+ and %d an int */
    snprintf(msg, sizeof msg, "response larger than %lu bytes (max_response_size)", (unsigned long)a->max_response);
    lua_pushstring(L, msg);
  } else {
    lua_pushstring(L, rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport");
    lua_pushstring(L, a->errbuf[0] ? a->errbuf : curl_easy_strerror(rc));
  }
  lua_pushboolean(L, !a->too_large && retryable(rc) && !headers_too_large(a));
  lua_pushinteger(L, a->sent);
  return 5;
}

/* An error answer may echo the request -- a gateway's page, a message
 * quoting a header -- so the token is cut out of it before Lua sees it:
 * no error message or log line made from it can carry the token.  (Its
 * JSON-escaped forms are cut after decoding: response.lua, session:redact.) */
static void push_error_body(lua_State *L, const mp_answer *a, const char *body, size_t len) {
  mp_needle token;
  token.s = a->token, token.n = a->token_len, token.label = "[token]", token.rank = 1;
  mp_cut(L, body, len, &token, a->token_len >= MP_MIN_CUT_TOKEN);
}

int mp_push_answer(lua_State *L, CURL *e, mp_answer *a, CURLcode rc) {
  long status = 0;
  const char *body = a->body.data ? a->body.data : "";
  if (rc != CURLE_OK) {
    int n = push_failure(L, a, rc);
    mp_buf_trim(&a->body, MP_KEEP_BUFFER); /* a cut-off answer can be large */
    return n;
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  lua_pushinteger(L, (lua_Integer)status);
  if (status >= 200 && status < 300) lua_pushlstring(L, body, a->body.len);
  else push_error_body(L, a, body, a->body.len);
  push_meta(L, e, a);
  mp_buf_trim(&a->body, MP_KEEP_BUFFER);
  return 3;
}

static const char *const methods[] = {"GET", "PUT", "PATCH", "DELETE", "POST", NULL};

const char *mp_check_method(lua_State *L, int arg) {
  return methods[luaL_checkoption(L, arg, NULL, methods)];
}

const char *mp_check_url(lua_State *L, int arg) {
  size_t len;
  const char *url = luaL_checklstring(L, arg, &len);
  if (strlen(url) != len || strpbrk(url, "\r\n\t ") != NULL)
    luaL_argerror(L, arg, "URL must not contain spaces, CR, LF or NUL");
  return url;
}

/* ---------------------------------------------------------------- busy */

void mp_busy_push(lua_State *L, lua_CFunction f, int nargs) {
  int i;
  luaL_checkstack(L, nargs + 1, "busy call");
  lua_pushcfunction(L, f);
  for (i = 1; i <= nargs; i++) lua_pushvalue(L, i);
}

int mp_busy_run(lua_State *L, mp_busy *b, int nargs, void (*close)(void *), void *owner) {
  int base = lua_gettop(L) - nargs - 1;
  int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
  b->busy = 0;
  if (b->close_pending) close(owner);
  if (rc != 0) return lua_error(L);
  return lua_gettop(L) - base;
}
