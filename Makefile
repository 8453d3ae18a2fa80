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
BUILD         ?= build

SHELL := /bin/bash

SRCS := $(wildcard csrc/*.c)
HDRS := $(wildcard csrc/*.h)

# One build of the core per interpreter: a module built against 5.4 headers
# does not load in LuaJIT (and the emulator runs inside nginx's LuaJIT).
# $(BUILD)/<v>/vercel/marketplace/core.so for v in 5.4 5.3 5.1 luajit.
core_so = $(BUILD)/$(1)/vercel/marketplace/core.so
incdir  = $(if $(filter luajit,$(1)),$(LUAJIT_INCDIR),$(if $(filter $(LUA_VERSION),$(1)),$(LUA_INCDIR),/usr/include/lua$(1)))
interp  = $(if $(filter luajit,$(1)),luajit,lua$(1))

# The interpreters `make test` runs the suite on: every one installed with
# its headers (CI installs all four).
TEST_VERSIONS ?= $(LUA_VERSION) $(foreach v,5.3 5.1,$(if $(filter-out $(LUA_VERSION),$(v)),$(if $(and $(wildcard /usr/bin/lua$(v)),$(wildcard /usr/include/lua$(v)/lua.h)),$(v)))) $(if $(and $(wildcard /usr/bin/luajit),$(wildcard $(LUAJIT_INCDIR)/lua.h)),luajit)

.PHONY: all core luajit test demo bench install clean deps

all: core luajit

core: $(call core_so,$(LUA_VERSION))
luajit: $(call core_so,luajit)

$(BUILD)/%/vercel/marketplace/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(XCFLAGS) -I$(call incdir,$*) -I$(CURL_INCDIR) $(LIBFLAG) -o $@ $(SRCS) -lcurl

# Paths for running from the work tree, without installing ($(1): version).
tree_env = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
           LUA_CPATH="$(abspath $(BUILD))/$(1)/?.so;;" \
           VERCEL_MARKETPLACE_LUAJIT_CPATH="$(abspath $(BUILD))/luajit/?.so"

# The suite on every interpreter, then one plain "N passed, N failed" line.
test: $(foreach v,$(TEST_VERSIONS),test-$(v))
	@awk '/ successes \/ / { p += $$1; f += $$4 + $$7 } END { print p " passed, " f " failed" }' \
	  $(foreach v,$(TEST_VERSIONS),$(BUILD)/test-$(v).log)

test-%: $(call core_so,luajit) $(BUILD)/%/vercel/marketplace/core.so
	@echo "== busted on $(call interp,$*)"
	@set -o pipefail; $(call tree_env,$*) $(call interp,$*) $(BUSTED) spec | tee $(BUILD)/test-$*.log

demo: deps all
	$(call tree_env,$(LUA_VERSION)) LUA=$(LUA) bin/demo

bench: all
	$(call tree_env,$(LUA_VERSION)) $(LUA) bench/run.lua

deps:
	@.ci/deps

install:
	luarocks --lua-version $(LUA_VERSION) make --deps-mode=none $(if $(DESTDIR),--tree=$(DESTDIR)$(PREFIX))

clean:
	rm -rf $(BUILD)
