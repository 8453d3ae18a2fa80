/*
 * encode.h -- the JSON writer.  It only writes: every value handed to it has
 * already been judged by the walker (validate.c): numbers are finite, and a
 * string the writer finds not to be UTF-8 is reported back, never written.
 * Each function returns 0 when memory runs out, 1 otherwise.
 */
#ifndef MP_ENCODE_H
#define MP_ENCODE_H

#include <stddef.h>

#include "buffer.h"
#include "compat.h"

MP_BEGIN_INTERNAL

/* Whether the n bytes at s are well-formed UTF-8 (no overlongs, surrogates or
 * code points past U+10FFFF).  Not a writer, but the byte-level rule the
 * walker (and the transport, for ids) applies before anything is written. */
int mp_utf8_valid(const char *s, size_t n);

/* A quoted, escaped JSON string (RFC 8259); `n` bytes, NULs included.  It
 * checks UTF-8 in the same pass (one read of each byte): -1 when the bytes are
 * not UTF-8, the buffer then holding a partial string the caller discards. */
int mp_json_string(mp_buf *b, const char *s, size_t n);

/* An integer, every digit exact (math.mininteger included). */
int mp_json_integer(mp_buf *b, lua_Integer i);

/* A finite double: integral values without a fraction, others in the shortest
 * of %.15g / %.16g / %.17g that reads back as the same double, with a '.'
 * whatever the C locale's decimal point is. */
int mp_json_number(mp_buf *b, lua_Number d);

MP_END_INTERNAL

#endif /* MP_ENCODE_H */
