-- A process never uses a connection it did not open.  After a fork the
-- child's first request goes over a fresh connection, no answer meant for
-- one process reaches the other, and the child's closing leaves the
-- parent's kept-alive connection (TLS included) intact.  A plain fork()
-- (LuaJIT's FFI, the core built for LuaJIT) and nginx's forked workers.
local helper = require "helper"
local cjson = require "cjson"

local TOKEN = "fork-token-0123456789"

-- Runs in luajit: `who` asks for who_1..who_20 and notes every answer.
local FORK_SCRIPT = [=[
local ffi = require "ffi"
ffi.cdef [[ int fork(void); int waitpid(int pid, int *status, int options); void _exit(int status); ]]
local core = require "vercel.marketplace.core"
local URL, CA, TOKEN, MODE = ...
local s = core.session { token = TOKEN, ca_file = CA }
local function get(id)
  local status, body, meta = s:perform("GET", URL .. "/v1/installations/icfg_f/resources/" .. id)
  local got = status == 200 and body:match('"name":"([^"]+)"') or ("status " .. tostring(status) .. " " .. tostring(body))
  return got, meta and meta.reused
end
local function run(who)
  local lines = {}
  for k = 1, 20 do
    local id = who .. "_" .. k
    local got, reused = get(id)
    lines[#lines + 1] = ("%s\t%s\t%s"):format(id, got, tostring(reused))
  end
  return table.concat(lines, "\n")
end
assert(get("p_0") == "p_0")                       -- the parent's kept-alive connection
local pid = ffi.C.fork()
if pid == 0 and (MODE == "close" or MODE == "gc") then -- done with the session unused
  if MODE == "close" then s:close() else s = nil; collectgarbage(); collectgarbage() end
  io.open(os.getenv("FORK_OUT") .. ".child", "w"):close()
  ffi.C._exit(0)
end
if pid == 0 then
  local out = run("c")
  s:close()
  local f = io.open(os.getenv("FORK_OUT") .. ".child", "w")
  f:write(out, "\n")
  f:close()
  ffi.C._exit(0)
end
local status = ffi.new("int[1]")
if MODE ~= "together" then ffi.C.waitpid(pid, status, 0) end
local out = run("p")
if MODE == "together" then ffi.C.waitpid(pid, status, 0) end
local f = io.open(os.getenv("FORK_OUT") .. ".parent", "w")
f:write(out, "\n")
f:close()
print("exit " .. status[0])
]=]

-- {id = {got = name, reused = "true"|"false"}} from a script's lines.
local function answers(text)
  local t = {}
  for id, got, reused in (text or ""):gmatch("([^\t\n]+)\t([^\t\n]+)\t([^\t\n]+)\n") do
    t[#t + 1] = { id = id, got = got, reused = reused }
  end
  return t
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  os.remove(path)
  return s
end

local function crossed(list)
  local bad = {}
  for _, a in ipairs(list) do
    if a.got ~= a.id then bad[#bad + 1] = ("asked %s got %s"):format(a.id, a.got) end
  end
  return bad
end

for _, protocol in ipairs({ "HTTP/2", "HTTP/1.1" }) do
describe("a forked process, over TLS and " .. protocol .. ",", function()
  -- Over HTTP/1.1 a clean close of the inherited connection sends a TLS
  -- close_notify that ends the parent's connection too.
  local emu = helper.use_emulator({ token = TOKEN, tls = true, args = protocol == "HTTP/1.1" and { "--no-http2" } or nil })

  before_each(function()
    for _, who in ipairs({ "p", "c" }) do
      for k = 0, 20 do
        local id = who .. "_" .. k
        local status = emu:api("PUT", "/v1/installations/icfg_f/resources/" .. id,
          { productId = "p", name = id, status = "ready" })
        assert.equals(200, status)
      end
    end
  end)

  local function fork(mode)
    local script, out = os.tmpname(), os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(FORK_SCRIPT)
    f:close()
    local cpath = os.getenv("VERCEL_MARKETPLACE_LUAJIT_CPATH") or (helper.root .. "/build/luajit/?.so")
    local cmd = ("FORK_OUT=%q LUA_CPATH=%q timeout 60 luajit %q %q %q %q %q 2>&1"):format(out, cpath .. ";;",
      script, emu.https_url, emu.certificate.cert, TOKEN, mode)
    local ok, output = helper.popen_run(cmd)
    os.remove(script)
    assert.is_true(ok, output)
    assert.matches("exit 0", output)
    return answers(read(out .. ".parent")), answers(read(out .. ".child"))
  end

  it("starts on a connection of its own, and leaves the parent's intact", function()
    local parent, child = fork("after")
    assert.equals(20, #child)
    assert.equals(20, #parent)
    assert.same({}, crossed(child))
    assert.same({}, crossed(parent))
    assert.equals("false", child[1].reused)   -- not the inherited connection
    assert.equals("true", parent[1].reused)   -- the child's close wrote nothing to it
  end)

  it("closing or collecting a session it never used leaves the parent's connection intact", function()
    for _, mode in ipairs({ "close", "gc" }) do
      local parent = fork(mode)
      assert.equals(20, #parent)
      assert.same({}, crossed(parent))
      assert.equals("true", parent[1].reused, mode)
    end
  end)

  it("never receives an answer meant for the other", function()
    for _ = 1, 3 do
      local parent, child = fork("together")
      assert.equals(20, #child)
      assert.equals(20, #parent)
      assert.same({}, crossed(child))
      assert.same({}, crossed(parent))
    end
  end)
end)
end

describe("nginx workers forked from a master that made a call", function()
  local emu = helper.use_emulator({ token = TOKEN })

  it("each get their own answers over connections of their own", function()
    for w = 0, 1 do
      for k = 0, 20 do
        local id = ("w%d_%d"):format(w, k)
        assert.equals(200, (emu:api("PUT", "/v1/installations/icfg_w/resources/" .. id,
          { productId = "p", name = id, status = "ready" })))
      end
    end
    local nginx = helper.start_nginx(([[
      init_by_lua_block {
        local m = require "vercel.marketplace"
        INST = m.installation("icfg_w", { token = %q, base_url = %q })
        assert(INST:get("w0_0"))                 -- leaves a kept-alive connection in the master
      }
      init_worker_by_lua_block {
        local id = ngx.worker.id()
        local lines = {}
        for k = 1, 20 do
          local asked = ("w%%d_%%d"):format(id, k)
          local r, err = INST:get(asked)
          lines[#lines + 1] = ("%%s\t%%s\t-\n"):format(asked, r and r.name or tostring(err))
        end
        -- workers may not write to the prefix (they drop root): the log, opened by the master
        ngx.log(ngx.NOTICE, "answers of worker ", id, ":\n", table.concat(lines), "end of worker ", id)
      }
      server { listen 127.0.0.1:@PORT@; location / { return 204; } }
    ]]):format(TOKEN, emu.url), { workers = 2 })
    local got, log = {}, ""
    for _ = 1, 200 do                                        -- about 10 s
      log = nginx:error_log()
      for w = 0, 1 do got[w] = log:match("answers of worker " .. w .. ":\n(.-)end of worker " .. w) end
      if got[0] and got[1] then break end
      helper.sleep(0.05)
    end
    nginx:stop()
    for w = 0, 1 do
      local list = answers(got[w])
      assert.equals(20, #list, "worker " .. w .. ": " .. tostring(got[w]) .. "\n" .. log)
      assert.same({}, crossed(list))
    end
  end)
end)
