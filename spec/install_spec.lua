-- Installing with LuaRocks: `luarocks make --deps-mode=none` builds the C
-- core (for this Lua and for the emulator's LuaJIT) and installs the modules
-- and the emulator command; both work from the installed tree alone.
local helper = require "helper"

local version = _VERSION:match("%d+%.%d+")
local luajit = type(jit) == "table"

-- LuaRocks builds for PUC Lua interpreters; LuaJIT runs the rest of the suite.
local describe_installed = (luajit or os.execute("command -v luarocks >/dev/null") == false) and pending or describe

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  if ok == true or code == 0 or ok == 0 then return true, out end
  return false, out
end

describe_installed("luarocks make", function()
  local tmp, tree

  lazy_setup(function()
    tmp = select(2, sh("mktemp -d")):gsub("%s+$", "")
    tree = tmp .. "/tree"
    -- Build from a copy, so no object file lands in the work tree.
    local files = {}
    for _, f in ipairs({ "csrc", "lua", "bin", "types", "README.md", "*.rockspec" }) do
      files[#files + 1] = helper.root .. "/" .. f
    end
    local ok, out = sh(("cp -r %s %s/"):format(table.concat(files, " "), tmp))
    assert(ok, out)
    ok, out = sh(("cd %s && luarocks --lua-version %s make --deps-mode=none --tree=%s"):format(
      helper.shell_quote(tmp), version, helper.shell_quote(tree)))
    assert(ok, out)
  end)

  lazy_teardown(function()
    if tmp then sh("rm -rf " .. helper.shell_quote(tmp)) end
  end)

  -- Run `code` with only the installed tree (and Debian's cjson) on the paths.
  local function run_installed(code, arg)
    local script = tmp .. "/script.lua"
    local f = assert(io.open(script, "w"))
    f:write(code)
    f:close()
    local env = ("LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;'")
      :format(tree, version, tree, version, tree, version)
    return sh(("env -u VERCEL_MARKETPLACE_LUAJIT_CPATH -u VERCEL_MARKETPLACE_LUA_PATH %s lua%s %s %s")
      :format(env, version, script, arg or ""))
  end

  it("installs the modules and the core", function()
    local ok, out = run_installed([[
      local m = require "vercel.marketplace"
      -- Lua 5.1 has no package.searchpath: the same search, spelled out.
      local searchpath = package.searchpath or function(name, path)
        for c in path:gmatch("[^;]+") do
          local file = c:gsub("%?", (name:gsub("%.", "/")))
          local f = io.open(file)
          if f then f:close() return file end
        end
      end
      print(m.VERSION, searchpath("vercel.marketplace.core", package.cpath))
      print(m.validate("import", { productId = "p", name = "n", status = "ready" }))
    ]])
    assert.is_true(ok, out)
    assert.matches("^0%.1%.0\t" .. tree:gsub("%p", "%%%0") .. "/lib/lua/", out)
    assert.matches("\ntrue\n", out)
  end)

  it("installs the command line", function()
    local ok, out = sh(("%s/bin/vercel-marketplace --help"):format(tree))
    assert.is_true(ok, out)
    assert.matches("sync", out)
    local body = tmp .. "/body.json"
    local f = assert(io.open(body, "w"))
    f:write('{"productId":"p","name":"n","status":"ready"}')
    f:close()
    ok, out = sh(("%s/bin/vercel-marketplace validate import %s"):format(tree, body))
    assert.is_true(ok, out)
  end)

  it("installs the type annotations", function()
    local f = io.open(("%s/lib/luarocks/rocks-%s/vercel-marketplace/0.1.0-1/types/vercel-marketplace.lua")
      :format(tree, version))
    assert.truthy(f, "types/ not installed")
    f:close()
  end)

  it("installs an emulator that runs from the tree", function()
    local emulator = tree .. "/bin/vercel-marketplace-emulator"
    local ok, out = run_installed(([[
      -- stderr (nginx's retries on a taken port) stays out of the pipe we parse.
      local f = assert(io.popen(%q .. " --port 0 --token t 2>/dev/null & echo $!"))
      local pid = f:read("*l")
      local line = f:read("*l")
      local url = assert(line and line:match("^listening on (%%S+)"), line)
      local m = require "vercel.marketplace"
      local inst = m.installation("icfg", { token = "t", base_url = url })
      local out, err = inst:import("db", { productId = "p", name = "n", status = "ready" })
      -- A body our client would refuse: the emulator's own (LuaJIT) core judges it.
      local s = require("vercel.marketplace.core").session({ token = "t" })
      local status, body = s:perform("PATCH", url .. "/v1/installations/icfg/resources/db", '{"status":1}')
      os.execute("kill " .. pid)
      f:close()
      print(out and out.name, err, status, body)
    ]]):format(emulator))
    assert.is_true(ok, out)
    assert.matches("^n\tnil\t400\t.*status", out)
  end)
end)
