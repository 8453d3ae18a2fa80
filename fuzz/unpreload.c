/*
 * unpreload.c -- for `make asan`: preloaded after the ASan runtime into the
 * lua5.4 that runs the suite, it removes LD_PRELOAD from the environment as
 * the process starts, so the suite's children (sh, curl, nginx, luarocks,
 * the compiler) run uninstrumented.  A child lua5.4 is instrumented again
 * through build/asan/bin/lua5.4, which is first on PATH.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void) { unsetenv("LD_PRELOAD"); }
