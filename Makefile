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

.PHONY: all core luajit test demo bench install clean deps docs

all: core luajit

core: $(call core_so,$(LUA_VERSION))
luajit: $(call core_so,luajit)

$(BUILD)/%/vercel/marketplace/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(XCFLAGS) -I$(call incdir,$*) -I$(CURL_INCDIR) $(LIBFLAG) -o $@ $(SRCS) -lcurl

# Paths for running from the work tree, without installing ($(1): version).
# The suite, the demo and the bench talk to servers on 127.0.0.1 and
# localhost: a proxy set in the caller's environment must not catch them.
tree_env = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
           LUA_CPATH="$(abspath $(BUILD))/$(1)/?.so;;" \
           VERCEL_MARKETPLACE_LUAJIT_CPATH="$(abspath $(BUILD))/luajit/?.so" \
           no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost

# The suite on every interpreter, then one plain "N passed, N failed" line.
test: $(foreach v,$(TEST_VERSIONS),test-$(v))
	@awk '/ successes \/ / { p += $$1; f += $$4 + $$7 } END { print p " passed, " f " failed" }' \
	  $(foreach v,$(TEST_VERSIONS),$(BUILD)/test-$(v).log)

test-%: $(call core_so,luajit) $(BUILD)/%/vercel/marketplace/core.so
	@echo "== busted on $(call interp,$*)"
	@set -o pipefail; $(call tree_env,$*) $(call interp,$*) $(BUSTED) spec | tee $(BUILD)/test-$*.log

demo: deps all
	$(call tree_env,$(LUA_VERSION)) LUA=$(LUA) bin/demo

# The raw libcurl loop (the ceiling) is built here; BENCH_REQUESTS lowers
# the memory run's 100000 requests.
bench: all
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) $(WARN) -D_POSIX_C_SOURCE=200809L -I$(CURL_INCDIR) -o $(BUILD)/bench/raw_curl bench/raw_curl.c -lcurl
	$(call tree_env,$(LUA_VERSION)) BENCH_RAW_CURL="$(abspath $(BUILD))/bench/raw_curl" $(LUA) bench/run.lua

deps:
	@.ci/deps

# The API reference from the code's LDoc comments (config.ld), with Debian's
# ldoc; any warning fails the build, so the comments cannot rot unnoticed.
docs:
	@rm -rf $(BUILD)/docs
	@out=$$(ldoc --dir $(abspath $(BUILD))/docs . 2>&1); status=$$?; echo "$$out"; \
	  [ $$status -eq 0 ] && ! echo "$$out" | grep -v -e '^reading configuration' -e '^output written'

install:
	luarocks --lua-version $(LUA_VERSION) make --deps-mode=none $(if $(DESTDIR),--tree=$(DESTDIR)$(PREFIX))

clean:
	rm -rf $(BUILD)

# --- Hardening: fuzzing, sanitizers, leaks (issue 6) -----------------------
# Each builds into its own directory under $(BUILD); none touches the
# default build.

.PHONY: fuzz fuzz-build asan valgrind

FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES := body response
FUZZ_FLAGS   := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
# Debian's cjson.so, for the harnesses' embedded Lua 5.4.
CJSON_CPATH  ?= $(dir $(shell lua5.4 -e 'print((package.searchpath("cjson", package.cpath)))' 2>/dev/null))?.so

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -std=c99 -D_POSIX_C_SOURCE=200809L -Icsrc -I/usr/include/lua5.4 \
	  -DFUZZ_ROOT='"$(CURDIR)"' -DCJSON_CPATH='"$(CJSON_CPATH)"' \
	  -o $@ $< $(SRCS) -llua5.4 -lcurl -lm

fuzz-build: $(foreach h,$(FUZZ_HARNESSES),$(BUILD)/fuzz/fuzz_$(h))

# Each harness for FUZZ_SECONDS: new inputs go to $(BUILD)/fuzz/corpus/<h>
# (the seeds in fuzz/corpus/<h> are only read), a crash to
# $(BUILD)/fuzz/<h>-crash-*, and the target fails.
fuzz: fuzz-build
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  echo "== fuzz_$$h for $(FUZZ_SECONDS) s"; \
	  mkdir -p $(BUILD)/fuzz/corpus/$$h; \
	  $(BUILD)/fuzz/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 \
	    -max_len=16384 $$([ -f fuzz/$$h.dict ] && echo -dict=fuzz/$$h.dict) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/$$h- $(BUILD)/fuzz/corpus/$$h fuzz/corpus/$$h \
	    2>$(BUILD)/fuzz/$$h.log || { tail -60 $(BUILD)/fuzz/$$h.log; exit 1; }; \
	  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)' $(BUILD)/fuzz/$$h.log || true; \
	done

# The core with AddressSanitizer and UBSan, and the whole suite on Lua 5.4
# with it: the ASan runtime is preloaded into lua5.4 (fuzz/unpreload.c keeps
# it out of the children; a child lua5.4 gets it from the wrapper that comes
# first on PATH) and into nginx, whose LuaJIT loads the core built with ASan
# too (the emulator, the openresty specs).  Leaks: LeakSanitizer (not in
# nginx), fuzz/lsan.supp.
ASAN_CC    ?= gcc
# CI may pass a subset (ASAN_SPECS, VALGRIND_SPECS): the specs that drive the C core.
ASAN_SPECS ?= spec
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_RT     = $(shell $(ASAN_CC) -print-file-name=libasan.so)

$(BUILD)/asan/5.4/vercel/marketplace/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_FLAGS) $(XCFLAGS) -I/usr/include/lua5.4 -I$(CURL_INCDIR) -shared -o $@ $(SRCS) -lcurl

$(BUILD)/asan/unpreload.so: fuzz/unpreload.c
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC -shared -o $@ $<

# The same core for nginx's LuaJIT (the emulator, the openresty specs).
$(BUILD)/asan/luajit/vercel/marketplace/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_FLAGS) $(XCFLAGS) -I$(LUAJIT_INCDIR) -I$(CURL_INCDIR) -shared -o $@ $(SRCS) -lcurl

# The wrapper keeps its own name in argv[0], so specs that start arg[-1]
# start it again; include/ makes its directory a Lua prefix for LuaRocks.
# A child luajit gets it the same way (specs that fork in LuaJIT load the
# LuaJIT core built with ASan: VERCEL_MARKETPLACE_LUAJIT_CPATH).
# nginx gets the runtime from its own wrapper (VERCEL_MARKETPLACE_NGINX),
# without LeakSanitizer: nginx frees nothing when it exits, and LSan's tracer
# crashes now and then in an exiting nginx (1 in ~50).
$(BUILD)/asan/bin/lua5.4: $(BUILD)/asan/unpreload.so Makefile
	@mkdir -p $(@D) $(BUILD)/asan/include
	ln -sfn /usr/include/lua5.4 $(BUILD)/asan/include/lua5.4
	printf '#!/bin/bash\nLD_PRELOAD="%s %s" exec -a "$$0" /usr/bin/lua5.4 "$$@"\n' \
	  "$(ASAN_RT)" "$(abspath $(BUILD))/asan/unpreload.so" > $@
	printf '#!/bin/bash\nLD_PRELOAD="%s %s" exec -a "$$0" %s "$$@"\n' \
	  "$(ASAN_RT)" "$(abspath $(BUILD))/asan/unpreload.so" "$$(command -v luajit)" > $(@D)/luajit
	printf '#!/bin/bash\nASAN_OPTIONS="$$ASAN_OPTIONS:detect_leaks=0" LD_PRELOAD="%s" exec -a "$$0" %s "$$@"\n' \
	  "$(ASAN_RT)" "$${VERCEL_MARKETPLACE_NGINX:-$$(command -v nginx || echo /usr/sbin/nginx)}" > $(@D)/nginx
	chmod +x $@ $(@D)/luajit $(@D)/nginx

# MP_SANITIZER (asan, valgrind) and MP_SLOW (how many times slower the code
# runs: a spec may scale a time bound by it, never what it asserts) are set
# for the specs in both runs.
# Reports go to $(BUILD)/asan/log (one file a process), so a child's report
# fails the run too, whatever the spec that started it checks.
ASAN_LOGS = $(abspath $(BUILD))/asan/log
asan: $(BUILD)/asan/luajit/vercel/marketplace/core.so $(BUILD)/asan/5.4/vercel/marketplace/core.so $(BUILD)/asan/bin/lua5.4
	@echo "== busted on lua5.4 with ASan + UBSan + LSan"
	@rm -rf $(ASAN_LOGS); mkdir -p $(ASAN_LOGS)
	@set -o pipefail; $(call tree_env,asan/5.4) HOSTILE_SKIP_RSS=1 MP_SANITIZER=asan MP_SLOW=3 PATH="$(abspath $(BUILD))/asan/bin:$$PATH" \
	  VERCEL_MARKETPLACE_LUAJIT_CPATH="$(abspath $(BUILD))/asan/luajit/?.so" \
	  VERCEL_MARKETPLACE_NGINX="$(abspath $(BUILD))/asan/bin/nginx" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:log_path=$(ASAN_LOGS)/asan \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(ASAN_LOGS)/ubsan \
	  $(BUILD)/asan/bin/lua5.4 $(BUSTED) $(ASAN_SPECS) 2>&1 | tee $(BUILD)/test-asan.log; status=$$?; \
	  bad=$$(find $(ASAN_LOGS) -type f -size +0); \
	  for f in $$bad; do echo "== $$f:"; cat $$f; done | tee -a $(BUILD)/test-asan.log; \
	  echo "== asan: $$(echo $$bad | wc -w) processes with a report"; \
	  [ $$status -eq 0 ] && [ -z "$$bad" ]

# The whole 5.4 suite under valgrind: the lua5.4 that runs busted, and every
# lua5.4 it starts (the command line, the examples, README blocks) through
# the wrapper first on PATH; specs that start arg[-1] get the wrapper too
# (LUA_INIT_5_4: valgrind cannot keep the wrapper's name in argv[0]).  Not
# traced: nginx (the emulator and the openresty specs) and other programs.
# A memory error or definite leak fails the run: the busted process's at
# once, a child's through its log in $(BUILD)/valgrind/log (not its exit
# status, which specs check).
VALGRIND ?= valgrind
VALGRIND_SPECS ?= spec
VALGRIND_FLAGS = --quiet --trace-children=no --leak-check=full --errors-for-leak-kinds=definite \
                 --show-leak-kinds=definite --suppressions=$(CURDIR)/fuzz/valgrind.supp
VG_LOGS = $(abspath $(BUILD))/valgrind/log

# include/ makes the wrapper's directory a Lua prefix for LuaRocks.
$(BUILD)/valgrind/bin/lua5.4: Makefile
	@mkdir -p $(@D) $(BUILD)/valgrind/include
	ln -sfn /usr/include/lua5.4 $(BUILD)/valgrind/include/lua5.4
	printf '#!/bin/bash\nexec %s %s --log-file=%s/%%p.log /usr/bin/lua5.4 "$$@"\n' \
	  "$(VALGRIND)" "$(VALGRIND_FLAGS)" "$(VG_LOGS)" > $@
	chmod +x $@

valgrind: $(call core_so,luajit) $(call core_so,5.4) $(BUILD)/valgrind/bin/lua5.4
	@echo "== busted on lua5.4 under valgrind"
	@rm -rf $(VG_LOGS); mkdir -p $(VG_LOGS)
	@set -o pipefail; $(call tree_env,5.4) HOSTILE_SKIP_RSS=1 MP_SANITIZER=valgrind MP_SLOW=20 \
	  PATH="$(abspath $(BUILD))/valgrind/bin:$$PATH" \
	  LUA_INIT_5_4='arg[-1] = "$(abspath $(BUILD))/valgrind/bin/lua5.4"' \
	  $(VALGRIND) $(VALGRIND_FLAGS) --error-exitcode=1 \
	  /usr/bin/lua5.4 $(BUSTED) $(VALGRIND_SPECS) 2>&1 | tee $(BUILD)/test-valgrind.log; status=$$?; \
	  n=$$(ls $(VG_LOGS) | wc -l); bad=$$(find $(VG_LOGS) -type f -size +0); \
	  for f in $$bad; do echo "== valgrind, child lua5.4 $$f:"; cat $$f; done | tee -a $(BUILD)/test-valgrind.log; \
	  echo "== valgrind: $$n child lua5.4 processes traced, $$(echo $$bad | wc -w) with errors"; \
	  [ $$status -eq 0 ] && [ -z "$$bad" ]
