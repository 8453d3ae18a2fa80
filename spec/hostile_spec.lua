-- Hostile input: what a careless or malicious caller can hand the client.
-- Every case gets a clear `nil, err` (or a Lua error for a wrong argument
-- type), nothing reaches the server (the emulator's request log stays empty)
-- and the memory is given back.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"
local bodies = require "fixtures.bodies"

local TOKEN = "hostile-token"

-- Sanitizers and valgrind keep freed memory (quarantine, their own
-- allocator): `make asan` and `make valgrind` set this to skip RSS checks.
local CHECK_RSS = os.getenv("HOSTILE_SKIP_RSS") == nil

-- The process's resident set in KiB (Linux), or nil.
local function rss_kib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- Several cycles: Lua 5.1 and LuaJIT halve their concatenation buffer
-- (sized by the largest `..` result) once per cycle.
local function full_gc()
  for _ = 1, 10 do collectgarbage() end
end

-- The one problem of a validation error, as "path: message".
local function problems(err)
  local out = {}
  for i, p in ipairs(err.errors) do out[i] = p.path .. ": " .. p.message end
  return out
end

describe("hostile input", function()
  local emu, inst = helper.use_emulator({ token = TOKEN }), nil

  before_each(function()
    inst = marketplace.installation("icfg_h", { token = TOKEN, base_url = emu.url, retries = 0 })
  end)

  after_each(function()
    inst:close()
  end)

  local function nothing_sent()
    assert.same({}, emu:requests())
  end

  -- import(body) must fail validation with `expected` among its problems.
  local function refused(body, expected, op)
    local out, err
    if op == "update" then out, err = inst:update("db_1", body)
    elseif op == "secrets" then out, err = inst:update_secrets("db_1", body)
    else out, err = inst:import("db_1", body) end
    assert.is_nil(out)
    assert.equals("validation", err.kind)
    assert.is_truthy(tostring(err):find("nothing was sent", 1, true))
    if expected then assert.contains(expected, problems(err)) end
    return err
  end

  -- busted's assert.contains is not there on every version.
  assert:register("assertion", "contains", function(_, args)
    for _, v in ipairs(args[2]) do
      if v == args[1] then return true end
    end
    return false
  end, "assertion.contains.positive", "assertion.contains.negative")
  local say = require "say"
  say:set("assertion.contains.positive", "Expected %s to be among:\n%s")
  say:set("assertion.contains.negative", "Expected %s not to be among:\n%s")

  describe("structure", function()
    it("refuses nesting 100,000 deep at the 64th level, without recursing further", function()
      local body = bodies.import_min()
      body.metadata = bodies.nested(100000, "k")
      local err = refused(body, nil)
      assert.equals(1, #err.errors)
      assert.matches("^metadata%.k%.k", err.errors[1].path)
      assert.equals("nesting deeper than 64 levels", err.errors[1].message)
      local deep_array = bodies.nested(100000, 1)
      local json, errs = core.encode_value(deep_array)
      assert.is_nil(json)
      assert.equals("nesting deeper than 64 levels", errs[1].message)
      assert.equals(deep_array, core.integerize(deep_array)) -- bounded too
      nothing_sent()
    end)

    it("refuses cycles, at the root and below, and keeps shared tables", function()
      local body = bodies.import_min()
      body.metadata = { a = {} }
      body.metadata.a.up = body.metadata
      refused(body, "metadata.a.up: table contains itself (cycle)")
      local root = bodies.import_min()
      root.extras = { list = { root } }
      refused(root, "extras.list[1]: table contains itself (cycle)")
      local list = { 1 }
      list[2] = list
      local json, errs = core.encode_value(list)
      assert.is_nil(json)
      assert.equals("[2]", errs[1].path)
      local shared = { x = 1 }
      local ok = core.encode_value({ a = shared, b = shared }) -- not a cycle
      assert.is_string(ok)
      nothing_sent()
    end)

    it("refuses sparse arrays, mixed tables and non-string keys", function()
      local body = bodies.import_min()
      body.secrets = { bodies.secret(), nil, bodies.secret() }
      refused(body, "secrets: array has holes")
      body = bodies.import_min()
      body.extras = { list = { [1] = 1, [1000000] = 2 } }
      refused(body, "extras.list: array has holes")
      body = bodies.import_min()
      body.extras = { list = { 1, 2, x = 3 } }
      refused(body, "extras.list: table mixes integer and string keys")
      body = bodies.import_min()
      body.metadata = { [true] = 1 }
      refused(body, "metadata: key must be a string, got boolean")
      body = bodies.import_min()
      body.metadata = { [1.5] = 1 }
      refused(body, "metadata: key must be a string, got number")
      nothing_sent()
    end)

    it("caps the problem list of a body with 100,000 unknown keys", function()
      local body = bodies.import_min()
      for i = 1, 100000 do body["k" .. i] = true end
      local err = refused(body, nil)
      assert.equals(core.MAX_ERRORS + 1, #err.errors)
      assert.equals("more than 100 problems; stopped", err.errors[#err.errors].message)
      nothing_sent()
    end)

    it("never runs a metamethod, even ones that raise", function()
      local body = bodies.import_min()
      body.metadata = bodies.hostile({ x = bodies.hostile({ 1, 2 }) })
      body.zz = true
      refused(bodies.hostile(body), "zz: unknown field")
      nothing_sent()
      rawset(body, "zz", nil)
      -- A valid body behind raising metatables is sent as its raw contents.
      assert.truthy(inst:import("db_1", body))
      assert.equals(1, #emu:requests())
    end)

    it("refuses a read-only proxy for the secrets list instead of sending [] (which would wipe them)", function()
      local ok, err = inst:update_secrets("db_1", bodies.proxy())
      assert.is_nil(ok)
      assert.equals("validation", err.kind)
      assert.equals("secrets", err.errors[1].path)
      nothing_sent()
    end)
  end)

  describe("values", function()
    it("refuses invalid UTF-8 in values and keys, never echoing the bytes", function()
      for _, bad in ipairs({ "\255", "a\192\175b", "\237\160\128", "\244\144\128\128", "ok\226\130" }) do
        local body = bodies.import_min()
        body.name = bad
        refused(body, "name: is not valid UTF-8")
        body = bodies.import_min()
        body.secrets = { { name = "URL", value = bad } }
        local err = refused(body, "secrets[1].value: is not valid UTF-8")
        assert.is_nil(tostring(err):find(bad, 1, true))
        body = bodies.import_min()
        body.metadata = { [bad] = 1 }
        err = refused(body, nil)
        assert.matches("^metadata%[\"", err.errors[1].path)
        assert.equals("key is not valid UTF-8", err.errors[1].message)
        assert.is_nil(err.errors[1].path:find(bad, 1, true)) -- written as \ddd
      end
      nothing_sent()
    end)

    it("sends NUL bytes in strings as \\u0000, intact", function()
      local body = bodies.import_min()
      body.metadata = { ["k\0ey"] = "v\0al" }
      assert.truthy(inst:import("db_1", body))
      local req = emu:requests()[1]
      assert.truthy(req.body:find('"k\\u0000ey":"v\\u0000al"', 1, true))
    end)

    it("refuses NaN and infinities", function()
      for _, n in ipairs({ 0 / 0, math.huge, -math.huge }) do
        local body = bodies.import_min()
        body.extras = { n = n }
        refused(body, "extras.n: must be a finite number")
        assert.is_nil((core.encode_value(n)))
      end
      nothing_sent()
    end)

    it("refuses functions, userdata, threads and light userdata", function()
      local odd = {
        ["function"] = print,
        userdata = io.stdout,
        thread = coroutine.create(function() end),
      }
      for name, v in pairs(odd) do
        local body = bodies.import_min()
        body.extras = { v = v }
        refused(body, "extras.v: expected a JSON value, got " .. name)
        body = bodies.import_min()
        body.name = v
        refused(body, "name: expected string, got " .. name)
      end
      nothing_sent()
    end)

    it("refuses a 64 MiB string with a bad last byte, and gives the memory back", function()
      full_gc()
      local kb0, rss0 = collectgarbage("count"), rss_kib()
      -- In a function of its own: Lua 5.1 and LuaJIT keep dead locals of a
      -- running function alive, but not those of one that has returned.
      local function big()
        local body = bodies.import_min()
        body.metadata = { blob = string.rep(string.rep("a", 65536), 1023) .. string.rep("a", 65535) .. "\255" }
        refused(body, "metadata.blob: is not valid UTF-8")
        -- The same size, valid, encodes (nothing is sent) ...
        body.metadata.blob = ""
        local overhead = #core.encode("import", body)
        body.metadata.blob = string.rep(string.rep("b", 65536), 1024)
        local json = core.encode("import", body)
        assert.equals(64 * 1024 * 1024 + overhead, #json)
      end
      big()
      -- ... and all of it is freed once dropped: Lua's heap and the core's buffer.
      full_gc()
      assert.is_true(collectgarbage("count") < kb0 + 1024, "Lua heap kept the string")
      local rss1 = rss_kib()
      if CHECK_RSS and rss0 and rss1 then
        assert.is_true(rss1 < rss0 + 32 * 1024, ("RSS grew from %d to %d KiB"):format(rss0, rss1))
      end
      nothing_sent()
    end)
  end)

  describe("ids", function()
    it("refuses ids that are empty, dot segments, control characters or not UTF-8", function()
      local cases = {
        [""] = "must not be empty", ["."] = "must not be '.' or '..'", [".."] = "must not be '.' or '..'",
        ["a\r\nb"] = "must not contain control characters", ["a\0b"] = "must not contain control characters",
        ["tab\t"] = "must not contain control characters", ["\255"] = "is not valid UTF-8",
      }
      for id, msg in pairs(cases) do
        for _, call in ipairs({
          function() return inst:get(id) end,
          function() return inst:delete(id) end,
          function() return inst:import(id, bodies.import_min()) end,
          function() return inst:update(id, { status = "ready" }) end,
          function() return inst:update_secrets(id, { bodies.secret() }) end,
        }) do
          local out, err = call()
          assert.is_nil(out)
          assert.equals("validation", err.kind)
          assert.same({ { path = "id", message = msg } }, err.errors)
        end
      end
      nothing_sent()
    end)

    it("sends every other id as one escaped path segment", function()
      local cases = {
        ["a/b"] = "a%2Fb", ["../etc/passwd"] = "..%2Fetc%2Fpasswd", ["a?b=1"] = "a%3Fb%3D1",
        ["a#frag"] = "a%23frag", ["100%"] = "100%25", ["%2e%2e"] = "%252e%252e",
        ["é日本"] = "%C3%A9%E6%97%A5%E6%9C%AC", ["a b+c"] = "a%20b%2Bc",
      }
      for id, esc in pairs(cases) do
        emu:reset()
        local _, err = inst:get(id)
        assert.equals(404, err.status)
        local reqs = emu:requests()
        assert.equals(1, #reqs)
        assert.equals("/v1/installations/icfg_h/resources/" .. esc, reqs[1].path)
      end
    end)

    it("raises for an installation id that is not a clean segment", function()
      for _, id in ipairs({ "", "..", "a\nb", "\255" }) do
        assert.has_error(function() marketplace.installation(id, { token = TOKEN, base_url = emu.url }) end)
      end
      nothing_sent()
    end)
  end)

  describe("headers", function()
    it("raises for CR, LF or NUL in the token or the user_agent, without echoing them", function()
      for _, field in ipairs({ "token", "user_agent" }) do
        for _, bad in ipairs({ "x\r\nX-Injected: 1", "x\nX-Injected: 1", "x\rX", "x\0X-Injected" }) do
          local opts = { token = TOKEN, base_url = emu.url }
          opts[field] = bad
          local ok, msg = pcall(marketplace.installation, "icfg_h", opts)
          assert.is_false(ok)
          assert.matches(field, msg)
          assert.is_nil(msg:find("Injected", 1, true))
        end
      end
      nothing_sent()
    end)

    it("raises for arguments of the wrong type", function()
      assert.has_error(function() inst:get(42) end)
      assert.has_error(function() inst:get(nil) end)
      assert.has_error(function() inst:get({}) end)
      assert.has_error(function() inst:import("db_1", "{}") end)
      assert.has_error(function() inst:update("db_1", nil) end)
      assert.has_error(function() inst:update_secrets("db_1", {}, { partial = true, extra = 1 }) end)
      assert.has_error(function() inst:update_secrets("db_1", "x") end)
      assert.has_error(function() marketplace.installation("icfg_h", { token = TOKEN, max_response_size = -1 }) end)
      assert.has_error(function() marketplace.installation("icfg_h", { token = TOKEN, max_response_size = 0 / 0 }) end)
      assert.has_error(function() marketplace.installation("icfg_h", { token = TOKEN, timeout = 0 / 0 }) end)
      assert.has_error(function() marketplace.installation("icfg_h", { token = TOKEN, base_url = "http://x/\r\n" }) end)
      nothing_sent()
    end)
  end)
end)
