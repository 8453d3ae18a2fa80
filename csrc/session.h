/*
 * session.h -- the session userdata (session.c), as batch handles need it.
 */
#ifndef MP_SESSION_H
#define MP_SESSION_H

#include "compat.h"
#include "easy.h"

MP_BEGIN_INTERNAL

/* The settings of the session userdata at idx (raises when it is none or
 * closed): batch handles copy them. */
const mp_conf *mp_session_conf(lua_State *L, int idx);

MP_END_INTERNAL

#endif /* MP_SESSION_H */
