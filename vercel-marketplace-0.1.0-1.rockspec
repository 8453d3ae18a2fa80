rockspec_format = "3.0"
package = "vercel-marketplace"
version = "0.1.0-1"
source = {
  url = "git+file:///dev/null", -- built from a checkout with `luarocks make`
  tag = "v0.1.0",
}
description = {
  summary = "Client for the Vercel Marketplace resource API: C core (libcurl), Lua API",
  detailed = [[
Import, update, read, list and delete Vercel Marketplace resources and rotate
their secrets from Lua.  Bodies are validated and encoded by a C core before
anything is sent; requests go over libcurl with keep-alive, retries and
backoff.  Ships a local emulator of the API (nginx + lua-nginx-module).
]],
  license = "MIT",
  labels = { "vercel", "marketplace", "http", "curl" },
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1.0",
}
build_dependencies = {}
test_dependencies = { "busted" }
external_dependencies = {
  -- Only the library is checked: Debian keeps curl.h in a multiarch include
  -- directory that LuaRocks does not search, but the compiler does.
  CURL = { library = "curl" },
  LUAJIT = { header = "luajit-2.1/lua.h" },
}
-- The C core: one source list, built once per interpreter.
local function core_module(define)
  return {
    sources = {
      "csrc/core.c", "csrc/schema.c", "csrc/validate.c", "csrc/encode.c", "csrc/easy.c",
      "csrc/session.c", "csrc/multi.c", "csrc/ids.c", "csrc/process.c", "csrc/redact.c", "csrc/answer.c",
    },
    libraries = { "curl" },
    incdirs = { "$(CURL_INCDIR)" },
    libdirs = { "$(CURL_LIBDIR)" },
    defines = { "_POSIX_C_SOURCE=200809L", define },
  }
end

build = {
  type = "builtin",
  modules = {
    ["vercel.marketplace.core"] = core_module(),
    -- The same core for nginx's LuaJIT (the emulator, OpenResty handlers): in
    -- lib/lua/5.x/vercel/marketplace/luajit/, where LuaJIT loads it as
    -- vercel.marketplace.core.  Needs LuaJIT's headers (libluajit2-5.1-dev).
    ["vercel.marketplace.luajit.vercel.marketplace.core"] = core_module("MP_LUAJIT_HEADERS"),
    ["vercel.marketplace"] = "lua/vercel/marketplace.lua",
    ["vercel.marketplace.error"] = "lua/vercel/marketplace/error.lua",
    ["vercel.marketplace.response"] = "lua/vercel/marketplace/response.lua",
    ["vercel.marketplace.retry"] = "lua/vercel/marketplace/retry.lua",
    ["vercel.marketplace.resource"] = "lua/vercel/marketplace/resource.lua",
    ["vercel.marketplace.transport"] = "lua/vercel/marketplace/transport.lua",
    ["vercel.marketplace.batch"] = "lua/vercel/marketplace/batch.lua",
    ["vercel.marketplace.cli"] = "lua/vercel/marketplace/cli.lua",
    ["vercel.marketplace.cosocket"] = "lua/vercel/marketplace/cosocket.lua",
    -- The emulator's handlers, loaded by nginx (LuaJIT) from the launcher.
    ["vercel.marketplace.emulator"] = "lua/vercel/marketplace/emulator/init.lua",
    ["vercel.marketplace.emulator.api"] = "lua/vercel/marketplace/emulator/api.lua",
    ["vercel.marketplace.emulator.control"] = "lua/vercel/marketplace/emulator/control.lua",
    ["vercel.marketplace.emulator.faults"] = "lua/vercel/marketplace/emulator/faults.lua",
    ["vercel.marketplace.emulator.journal"] = "lua/vercel/marketplace/emulator/journal.lua",
    ["vercel.marketplace.emulator.json"] = "lua/vercel/marketplace/emulator/json.lua",
    ["vercel.marketplace.emulator.reply"] = "lua/vercel/marketplace/emulator/reply.lua",
    ["vercel.marketplace.emulator.store"] = "lua/vercel/marketplace/emulator/store.lua",
  },
  -- Type annotations for lua-language-server, shipped with the rock.
  copy_directories = { "types" },
  install = {
    bin = {
      ["vercel-marketplace"] = "bin/vercel-marketplace",
      ["vercel-marketplace-emulator"] = "bin/vercel-marketplace-emulator",
    },
  },
}
test = {
  type = "busted",
}
