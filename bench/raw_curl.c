/*
 * raw_curl.c -- the ceiling for bench/run.lua: the same PUT requests (same
 * headers, same body bytes) sent from a plain libcurl C loop, with no Lua,
 * no validation and no answer decoding.
 *
 *   raw_curl easy  URL N BODY            sequential, one kept-alive handle
 *   raw_curl multi URL N BODY C          C in flight over one multi handle
 *   raw_curl tls   URL N BODY CAFILE cache|nocache
 *                                        sequential, where the server closes
 *                                        every connection: each request pays
 *                                        a TLS handshake and CA loading
 *   raw_curl h2    URL N BODY C CAFILE   C in flight over HTTPS, multiplexed
 *                                        on one HTTP/2 connection
 *
 * The User-Agent comes from BENCH_USER_AGENT, so the request is byte for
 * byte the library's.  Prints "<requests done> <seconds>" on stdout; exit
 * status 1 on a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct bench {
  const char *url, *body, *cafile, *user_agent;
  long n;
  int cache;
  struct curl_slist *headers;
} bench;

static size_t discard(char *data, size_t size, size_t n, void *ud) {
  (void)data;
  (void)ud;
  return size * n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static CURL *handle(const bench *b) {
  CURL *e = curl_easy_init();
  if (e == NULL) return NULL;
  curl_easy_setopt(e, CURLOPT_URL, b->url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(b->body));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(e, CURLOPT_USERAGENT, b->user_agent);
  if (b->cafile != NULL) {
    curl_easy_setopt(e, CURLOPT_CAINFO, b->cafile);
    /* Debian's default CA directory disables libcurl's CA cache. */
    if (b->cache) curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, b->cache ? 86400L : 0L);
  }
  return e;
}

static int ok(CURL *e, CURLcode rc) {
  long status = 0;
  if (rc != CURLE_OK) {
    fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
    return 0;
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) fprintf(stderr, "raw_curl: status %ld\n", status);
  return status == 200;
}

static long run_easy(const bench *b) {
  CURL *e = handle(b);
  long i;
  if (e == NULL) return 0;
  for (i = 0; i < b->n; i++)
    if (!ok(e, curl_easy_perform(e))) break;
  curl_easy_cleanup(e);
  return i;
}

/* Finished transfers go straight back in while requests remain. */
static long reap(CURLM *m, long *started, long n, long *done) {
  CURLMsg *msg;
  int left;
  long failed = 0;
  while ((msg = curl_multi_info_read(m, &left)) != NULL) {
    CURL *e = msg->easy_handle;
    if (msg->msg != CURLMSG_DONE) continue;
    if (!ok(e, msg->data.result)) failed++;
    (*done)++;
    curl_multi_remove_handle(m, e);
    if (*started < n) {
      curl_multi_add_handle(m, e);
      (*started)++;
    }
  }
  return failed;
}

static long run_multi(const bench *b, int c) {
  CURLM *m = curl_multi_init();
  CURL **e = calloc((size_t)c, sizeof *e);
  long started = 0, done = 0, failed = 0;
  int i, running;
  for (i = 0; i < c && started < b->n; i++, started++) {
    e[i] = handle(b);
    curl_easy_setopt(e[i], CURLOPT_PIPEWAIT, 1L);
    curl_multi_add_handle(m, e[i]);
  }
  while (done < b->n && failed == 0) {
    curl_multi_perform(m, &running);
    failed += reap(m, &started, b->n, &done);
    if (done < b->n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  for (i = 0; i < c; i++) {
    if (e[i] == NULL) continue;
    curl_multi_remove_handle(m, e[i]);
    curl_easy_cleanup(e[i]);
  }
  curl_multi_cleanup(m);
  free(e);
  return failed ? 0 : done;
}

static void usage(void) {
  fputs("usage: raw_curl easy|multi|h2|tls URL N BODY [C | C CAFILE | CAFILE cache|nocache]\n", stderr);
  exit(2);
}

int main(int argc, char **argv) {
  bench b = {NULL, NULL, NULL, NULL, 0, 0, NULL};
  const char *ua = getenv("BENCH_USER_AGENT");
  long done = 0;
  double t0;
  if (argc < 5) usage();
  b.url = argv[2];
  b.n = atol(argv[3]);
  b.body = argv[4];
  b.user_agent = ua ? ua : "raw_curl";
  curl_global_init(CURL_GLOBAL_DEFAULT);
  b.headers = curl_slist_append(b.headers, "Authorization: Bearer bench-token");
  b.headers = curl_slist_append(b.headers, "Accept: application/json");
  b.headers = curl_slist_append(b.headers, "Expect:");
  b.headers = curl_slist_append(b.headers, "Content-Type: application/json");
  t0 = now();
  if (strcmp(argv[1], "easy") == 0) {
    done = run_easy(&b);
  } else if (strcmp(argv[1], "multi") == 0 && argc == 6) {
    done = run_multi(&b, atoi(argv[5]));
  } else if (strcmp(argv[1], "h2") == 0 && argc == 7) {
    b.cafile = argv[6];
    b.cache = 1;
    done = run_multi(&b, atoi(argv[5]));
  } else if (strcmp(argv[1], "tls") == 0 && argc == 7) {
    b.cafile = argv[5];
    b.cache = strcmp(argv[6], "cache") == 0;
    done = run_easy(&b);
  } else {
    usage();
  }
  printf("%ld %.6f\n", done, now() - t0);
  curl_slist_free_all(b.headers);
  curl_global_cleanup();
  return done == b.n ? 0 : 1;
}
