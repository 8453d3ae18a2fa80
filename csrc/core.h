/*
 * core.h -- what each concern of the C core hands to the module entry (core.c).
 * Each mp_open_* adds its functions to the module table on top of the stack.
 */
#ifndef MP_CORE_H
#define MP_CORE_H

#include "compat.h"

MP_BEGIN_INTERNAL

#define MP_VERSION "0.1.0"

void mp_open_schema(lua_State *L);    /* schema.c: enums, limits */
void mp_open_codec(lua_State *L);     /* validate.c: validate, encode, encode_value, integerize */
void mp_open_transport(lua_State *L); /* transport.c: session, escape_id; multi.c: multi */

MP_END_INTERNAL

#endif /* MP_CORE_H */
