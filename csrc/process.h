/*
 * process.h -- what belongs to one process rather than to a request: the
 * sockets its libcurl handles opened (so a forked child never writes to the
 * parent's connections), the SIGINT trap, the clock, sleep and randomness.
 */
#ifndef MP_PROCESS_H
#define MP_PROCESS_H

#include <sys/types.h>

#include <curl/curl.h>

#include "compat.h"

MP_BEGIN_INTERNAL

/* The sockets a session or batch handle opened, and in which process.  After
 * a fork the child sees the parent's connections (the same sockets, and for
 * TLS the same session state): using them would cross answers between the
 * two, and even closing them cleanly would send a TLS alert into the
 * parent's stream.  So the child points each one at /dev/null first and only
 * then lets libcurl close them.  fd[] is the owner's: cap slots. */
typedef struct mp_sockets {
  pid_t pid;
  int n, cap, lost; /* lost: more sockets than cap were open at once */
  curl_socket_t *fd;
} mp_sockets;

void mp_sockets_init(mp_sockets *s, curl_socket_t *fd, int cap);
/* Has the process forked since the handle was opened (we are the child)? */
int mp_sockets_inherited(const mp_sockets *s);
/* In a forked child: make the inherited sockets harmless to close.  Returns 0
 * when some were not tracked (lost): the caller must then leak the handle
 * rather than let libcurl write to them. */
int mp_sockets_disown(mp_sockets *s);
/* Route an easy handle's socket creation and closing through s. */
void mp_sockets_attach(CURL *e, mp_sockets *s);

/* Whether SIGINT arrived since core.trap_interrupt() (0 without the trap). */
int mp_interrupted(void);
/* Whether core.trap_interrupt() is on: transfers then watch for SIGINT. */
int mp_trapped(void);

/* Adds now, sleep, random, trap_interrupt and interrupted to the module table
 * on top of the stack. */
void mp_open_process(lua_State *L);

MP_END_INTERNAL

#endif /* MP_PROCESS_H */
