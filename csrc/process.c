/*
 * process.c -- what belongs to the process, not to a request.
 *
 *   core.now()             monotonic seconds (retry budgets ignore clock steps)
 *   core.sleep(seconds)    blocks the thread; returns early after a trapped SIGINT
 *   core.random()          a float in [0, 1) from the kernel: differs in every
 *                          process, forked ones included (retry jitter)
 *   core.trap_interrupt()  SIGINT sets a flag instead of killing the process:
 *                          transfers and sleeps end early, the caller reports;
 *                          -> false when SIGINT is ignored (and stays so)
 *   core.interrupted()     whether that SIGINT came
 *
 * and the socket bookkeeping that keeps a forked child off its parent's
 * connections (process.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "process.h"

/* --------------------------------------------------------------- sockets */

void mp_sockets_init(mp_sockets *s, curl_socket_t *fd, int cap) {
  s->pid = getpid();
  s->n = s->lost = 0;
  s->cap = cap;
  s->fd = fd;
}

int mp_sockets_inherited(const mp_sockets *s) { return s->pid != getpid(); }

/* CLOEXEC too: a program the caller starts must not hold our connections. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  mp_sockets *s = (mp_sockets *)ud;
  int type = a->socktype;
  curl_socket_t fd;
  (void)purpose;
#ifdef SOCK_CLOEXEC
  type |= SOCK_CLOEXEC;
#endif
  fd = socket(a->family, type, a->protocol);
  if (fd == CURL_SOCKET_BAD) return fd;
  if (s->n < s->cap) s->fd[s->n++] = fd;
  else s->lost = 1;
  return fd;
}

static int close_socket(void *ud, curl_socket_t fd) {
  mp_sockets *s = (mp_sockets *)ud;
  int i;
  for (i = 0; i < s->n; i++)
    if (s->fd[i] == fd) {
      s->fd[i] = s->fd[--s->n];
      break;
    }
  return close(fd);
}

void mp_sockets_attach(CURL *e, mp_sockets *s) {
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)s);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)s);
}

/* dup2 swaps the descriptor for /dev/null atomically: the number stays
 * valid (libcurl will close it), but writes -- a TLS close_notify, an HTTP/2
 * GOAWAY -- go nowhere and the parent's connection is untouched. */
int mp_sockets_disown(mp_sockets *s) {
  int i, null = open("/dev/null", O_RDWR);
  if (null < 0) return 0;
  for (i = 0; i < s->n; i++) dup2(null, s->fd[i]);
  close(null);
  return !s->lost;
}

/* --------------------------------------------------------------- SIGINT */

/* The one mutable global of the core: a signal handler has no other place
 * to write.  sig_atomic_t, written only by the handler. */
static volatile sig_atomic_t got_sigint = 0;
static volatile sig_atomic_t trapped = 0; /* written once, by trap_interrupt */

static void on_sigint(int sig) {
  (void)sig;
  got_sigint = 1;
}

int mp_interrupted(void) { return got_sigint != 0; }
int mp_trapped(void) { return trapped != 0; }

/* -> whether the trap is on.  No SA_RESTART, so a blocking call returns
 * EINTR; SA_RESETHAND, so a second Ctrl-C kills the process as usual when
 * the first is not heeded.  A SIGINT the process was started ignoring (a
 * background job of a script, nohup) stays ignored. */
static int trap_interrupt(lua_State *L) {
  struct sigaction sa, old;
  if (sigaction(SIGINT, NULL, &old) != 0) return luaL_error(L, "sigaction failed");
  if (old.sa_handler == SIG_IGN) {
    lua_pushboolean(L, 0);
    return 1;
  }
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  if (sigaction(SIGINT, &sa, NULL) != 0) return luaL_error(L, "sigaction failed");
  trapped = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int interrupted(lua_State *L) {
  lua_pushboolean(L, got_sigint != 0);
  return 1;
}

/* --------------------------------------------------------------- time */

static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int core_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  struct timespec ts;
  if (!(secs > 0) || got_sigint) return 0; /* a SIGINT before the call ends the wait too */
  if (secs > 2147483647.0) secs = 2147483647.0; /* casting inf or 2^63 to time_t is undefined */
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !got_sigint) {
  }
  return 0;
}

/* --------------------------------------------------------------- random */

/* Eight bytes from the kernel, no state to seed: Lua's math.random is never
 * seeded on 5.1 and LuaJIT, and nginx workers forked from one master share
 * one state, so every process would draw the same jitter. */
static int fill_random(unsigned char *p, size_t n) {
  FILE *f;
  size_t got;
#if defined(__linux__)
  if (getrandom(p, n, 0) == (ssize_t)n) return 1;
#endif
  if ((f = fopen("/dev/urandom", "rb")) == NULL) return 0;
  got = fread(p, 1, n, f);
  fclose(f);
  return got == n;
}

static int core_random(lua_State *L) {
  unsigned char b[8];
  uint64_t x = 0;
  int i;
  if (!fill_random(b, sizeof b)) return luaL_error(L, "no randomness available");
  for (i = 0; i < 8; i++) x = (x << 8) | b[i];
  lua_pushnumber(L, (lua_Number)(x >> 11) / 9007199254740992.0); /* 53 bits / 2^53 */
  return 1;
}

void mp_open_process(lua_State *L) {
  static const luaL_Reg funcs[] = {{"now", core_now},
                                   {"sleep", core_sleep},
                                   {"random", core_random},
                                   {"trap_interrupt", trap_interrupt},
                                   {"interrupted", interrupted},
                                   {NULL, NULL}};
  mp_setfuncs(L, funcs, 0);
}
