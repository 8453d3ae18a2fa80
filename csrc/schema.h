/*
 * schema.h -- the request bodies of the Marketplace resource API as data.
 * schema.c describes each object once as a static array of fields; the walker
 * in validate.c interprets those arrays, so adding a field is one line there.
 */
#ifndef MP_SCHEMA_H
#define MP_SCHEMA_H

#include <stddef.h>

#include "compat.h"

MP_BEGIN_INTERNAL

#define MP_MAX_DEPTH 64   /* tables nested from the body root, the root being 1 */
#define MP_MAX_ERRORS 100 /* problems reported before the walk gives up */
#define MP_MAX_FIELDS 16  /* fields of one object (the walker keeps a slot each) */

/* Stringize a limit so messages and the numbers exported to Lua agree. */
#define MP_STR_(x) #x
#define MP_STR(x) MP_STR_(x)

typedef enum mp_type {
  MP_T_STRING,   /* any valid UTF-8 string */
  MP_T_ENUM,     /* a string from `words` */
  MP_T_PREFIXED, /* a string starting with one of `words` (href) */
  MP_T_BOOL,
  MP_T_MAP,      /* free-form object: any JSON inside */
  MP_T_OBJECT,   /* the object `obj` */
  MP_T_ARRAY     /* an array of the object `obj` */
} mp_type;

/* How a field of the resource differs in the update (PATCH) body. */
typedef enum mp_upd {
  MP_U_SAME,      /* same type, optional */
  MP_U_ABSENT,    /* not part of the update body: an unknown field there */
  MP_U_OR_STRING, /* the object or any string */
  MP_U_OR_OBJECT  /* the array or the object `alt` (told apart by its first field) */
} mp_upd;

/* A list of words: enum values, or allowed prefixes. */
typedef struct mp_words {
  const char *name;          /* the key under core.enums, NULL if not exported */
  const char *const *values; /* NULL-terminated */
} mp_words;

struct mp_object;

typedef struct mp_field {
  const char *name;
  size_t len;
  mp_type type;
  int required; /* on the import body, and always below the root */
  mp_upd upd;
  const mp_words *words;
  const struct mp_object *obj;
  const struct mp_object *alt;
} mp_field;

typedef struct mp_object {
  const mp_field *fields;
  int nfields;
  int open; /* extra keys allowed, as free-form values encoded after the fields */
} mp_object;

/* One accepted `kind` of core.validate / core.encode. */
typedef struct mp_root {
  const char *kind;
  const mp_object *obj;
  int update; /* root fields optional, with the update forms of mp_upd */
} mp_root;

/* The roots, terminated by an entry whose kind is NULL. */
const mp_root *mp_schema_roots(void);

MP_END_INTERNAL

#endif /* MP_SCHEMA_H */
