# Convenience targets; the rockspec is the install path (luarocks make).
# Honours LUA_INCDIR, LUA_VERSION, CFLAGS, LIBFLAG, CURL_INCDIR, PREFIX, DESTDIR
# as the LuaRocks wiki's "Makefile that plays nice" asks.

LUA_VERSION   ?= 5.4
LUA           ?= lua$(LUA_VERSION)
LUA_INCDIR    ?= /usr/include/lua$(LUA_VERSION)
LUAJIT_INCDIR ?= /usr/include/luajit-2.1
CURL_INCDIR   ?= /usr/include
CC            ?= cc
CFLAGS        ?= -O2 -g
LIBFLAG       ?= -shared
WARN          := -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
XCFLAGS       := -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L $(WARN)
PREFIX        ?= /usr/local
BUSTED        ?= /usr/bin/busted

SRCS := $(wildcard csrc/*.c)
HDRS := $(wildcard csrc/*.h)

# One build of the core per interpreter: a module built against 5.4 headers does
# not load in LuaJIT (and the emulator runs inside nginx's LuaJIT).
CORE     := build/$(LUA_VERSION)/vercel/marketplace/core.so
CORE_JIT := build/luajit/vercel/marketplace/core.so

SHELL := /bin/bash

.PHONY: all core luajit test demo bench install clean deps

all: core luajit

core: $(CORE)
luajit: $(CORE_JIT)

$(CORE): $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(XCFLAGS) -I$(LUA_INCDIR) -I$(CURL_INCDIR) $(LIBFLAG) -o $@ $(SRCS) -lcurl

$(CORE_JIT): $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(XCFLAGS) -I$(LUAJIT_INCDIR) -I$(CURL_INCDIR) $(LIBFLAG) -o $@ $(SRCS) -lcurl

build/%/vercel/marketplace/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(XCFLAGS) -I/usr/include/lua$* -I$(CURL_INCDIR) $(LIBFLAG) -o $@ $(SRCS) -lcurl

# Paths for running from the work tree, without installing.
TREE_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
           LUA_CPATH="$(CURDIR)/build/$(LUA_VERSION)/?.so;;" \
           VERCEL_MARKETPLACE_LUAJIT_CPATH="$(CURDIR)/build/luajit/?.so"

# The suite, then one plain "N passed, N failed" line for CI.
test: all
	@set -o pipefail; $(TREE_ENV) $(LUA) $(BUSTED) spec | tee build/test-$(LUA_VERSION).log
	@awk '/ successes \/ / { print $$1 " passed, " $$4 + $$7 " failed" }' build/test-$(LUA_VERSION).log

demo: deps all
	$(TREE_ENV) bin/demo

bench: all
	$(TREE_ENV) $(LUA) bench/run.lua

deps:
	@.ci/deps

install:
	luarocks make --deps-mode=none $(if $(DESTDIR),--tree=$(DESTDIR)$(PREFIX))

clean:
	rm -rf build
