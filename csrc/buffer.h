/*
 * buffer.h -- a growable byte buffer embedded in a userdata, so the garbage
 * collector owns it: a Lua error half-way through a walk leaves it consistent
 * (callers reset len before use) and its memory is freed by the owner's __gc.
 */
#ifndef MP_BUFFER_H
#define MP_BUFFER_H

#include <stdlib.h>
#include <string.h>

typedef struct mp_buf {
  char *data;
  size_t len, cap;
} mp_buf;

/* Make room for `extra` more bytes; 0 when memory is exhausted (nothing lost). */
static inline int mp_buf_grow(mp_buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > (size_t)-1 - b->len) return 0;
  need = b->len + extra;
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > (size_t)-1 / 2 ? need : cap * 2;
  p = (char *)realloc(b->data, cap);
  if (p == NULL) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

static inline int mp_buf_add(mp_buf *b, const char *s, size_t n) {
  if (!mp_buf_grow(b, n)) return 0;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 1;
}

/* Drop a large allocation after use so one huge body does not pin memory. */
static inline void mp_buf_trim(mp_buf *b, size_t keep) {
  if (b->cap > keep) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
}

static inline void mp_buf_free(mp_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#endif /* MP_BUFFER_H */
