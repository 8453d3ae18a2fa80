-- Secrets never leave through the side doors: every operation and every
-- failure kind is run with a known token and known secret values, and neither
-- may appear in an error object (any field, at any depth, or its tostring),
-- in the tostring of any object, in the debug log (the `log` option, and
-- MARKETPLACE_DEBUG=1 on stderr of a subprocess) or on that stderr at all.
local helper = require "helper"
local marketplace = require "vercel.marketplace"

-- Both markers share a distinctive core, so a partial leak is caught too.
local MARK = "SECRET-MARKER"
local TOKEN = "tok-" .. MARK .. "-7f3a9c"
local SECRET = "val-" .. MARK .. "-51e2b8"

-- A body carrying the secret everywhere a secret may go.
local function secrets()
  return {
    { name = "URL", prefix = "POSTGRES", value = SECRET,
      environmentOverrides = { development = SECRET, preview = SECRET, production = SECRET } },
    { name = "PASSWORD", value = SECRET },
  }
end

local function import_body()
  return { productId = "p", name = "n", status = "ready", secrets = secrets() }
end

-- Every string reachable from v (keys, values, tostring of tables and
-- userdata with a metatable), handed to `check` with where it was found.
local function each_string(v, where, check, seen)
  seen = seen or {}
  local t = type(v)
  if t == "string" then return check(v, where) end
  if t == "number" or t == "boolean" or t == "nil" then return check(tostring(v), where) end
  if seen[v] then return end
  seen[v] = true
  if t == "table" or t == "userdata" then
    local ok, s = pcall(tostring, v)
    if ok then check(s, where .. " (tostring)") end
  end
  if t == "table" then
    for k, x in pairs(v) do
      each_string(k, where .. "[key]", check, seen)
      each_string(x, where .. "." .. tostring(k), check, seen)
    end
  end
end

local function assert_clean(v, where)
  each_string(v, where, function(s, at)
    assert.is_nil(s:find(MARK, 1, true), "secret found at " .. at .. ": " .. s)
  end)
end

describe("secrets", function()
  local emu, lines

  lazy_setup(function()
    emu = helper.start_emulator({ token = TOKEN })
  end)

  lazy_teardown(function()
    if emu then emu:stop() end
  end)

  local function installation(opts)
    local o = { token = TOKEN, base_url = emu.url, retries = 1, retry_base = 0.01, timeout = 2,
                log = function(line) lines[#lines + 1] = line end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return marketplace.installation("icfg_s", o)
  end

  -- Every operation, with its secrets-laden arguments.
  local OPS = {
    import = function(i) return i:import("db_1", import_body()) end,
    update = function(i) return i:update("db_1", { status = "ready", secrets = secrets() }) end,
    update_partial = function(i) return i:update("db_1", { secrets = { secrets = secrets(), partial = true } }) end,
    get = function(i) return i:get("db_1") end,
    list = function(i) return i:list() end,
    update_secrets = function(i) return i:update_secrets("db_1", secrets(), { partial = true }) end,
    delete = function(i) return i:delete("db_1") end,
  }
  local ORDER = { "import", "update", "update_partial", "get", "list", "update_secrets", "delete" }

  -- Every failure kind: how to provoke it (a fault, options).
  local FAILURES = {
    { name = "an error status", fault = { status = 409, error = { code = "conflict", message = "busy" } } },
    { name = "a 5xx storm", fault = { status = 503, count = 10 } },
    { name = "a 429 with a limit", fault = { status = 429, retry_after = 3600,
      error = { code = "rate_limited", message = "slow", limit = { remaining = 0, reset = 1, resetMs = 1000, total = 5 } } } },
    { name = "a dropped connection", fault = { action = "drop", count = 10 } },
    { name = "a truncated answer", fault = { action = "truncate", count = 10 } },
    { name = "a malformed answer", fault = { action = "malformed" } },
    { name = "a timeout", fault = { action = "hang" }, opts = { timeout = 0.3 } },
    { name = "an oversized answer", fault = { status = 200, body = '"' .. string.rep("x", 5000) .. '"' },
      opts = { max_response_size = 1000 } },
    { name = "a wrong token", opts = { token = "tok-" .. MARK .. "-wrong" } },
    { name = "a refused connection", opts = { base_url = "http://127.0.0.1:" .. helper.closed_port() } },
  }

  before_each(function()
    emu:reset()
    lines = {}
    local inst = installation({ log = false })
    assert(inst:import("db_1", import_body()))
    inst:close()
  end)

  it("has markers the store really holds (the spec tests something)", function()
    local rec = emu:record("icfg_s", "db_1")
    assert.is_truthy(helper.decode and rec and rec.secrets)
    local found = false
    each_string(rec.secrets, "record", function(s) found = found or s == SECRET end)
    assert.is_true(found)
  end)

  it("never shows them in tostring of the installation, its session or its fields", function()
    local inst = installation()
    assert_clean(inst, "installation")
    assert_clean(getmetatable(inst), "installation metatable")
    inst:close()
    assert_clean(inst, "closed installation")
  end)

  it("never shows them on success: values, resources and the log", function()
    for _, name in ipairs(ORDER) do
      local inst = installation()
      local v, err = OPS[name](inst)
      assert.is_nil(err, name)
      assert_clean(v, name .. " value")
      if name == "delete" then assert(inst:import("db_1", import_body())) end
      inst:close()
    end
    assert.is_true(#lines >= #ORDER)
    assert_clean(lines, "log")
  end)

  it("never shows them in validation errors", function()
    local inst = installation()
    local bad = import_body()
    bad.status = "bogus"
    bad.secrets[1].value = SECRET .. "\255" -- not UTF-8: the message names it, never shows it
    bad.secrets[2].extra = SECRET
    bad.secrets[3] = { name = 1, value = { SECRET } }
    local cases = {
      { inst:import("db_1", bad) },
      { inst:update("db_1", { secrets = { secrets = bad.secrets, partial = "yes" } }) },
      { inst:update_secrets("db_1", bad.secrets) },
      { inst:update_secrets(SECRET .. "\n", secrets()) }, -- a bad id
      { marketplace.validate("import", bad) },
    }
    for i, r in ipairs(cases) do
      assert.is_nil(r[1])
      assert.equals("validation", r[2].kind)
      assert_clean(r[2], "validation error " .. i)
    end
    inst:close()
  end)

  for _, failure in ipairs(FAILURES) do
    it("never shows them in errors or the log after " .. failure.name, function()
      local kinds = {}
      for _, name in ipairs(ORDER) do
        if failure.fault then assert.equals(201, (emu:control("POST", "/_emulator/faults", failure.fault))) end
        local inst = installation(failure.opts)
        local v, err = OPS[name](inst)
        inst:close()
        if v then
          -- Only a malformed 200 to an operation whose answer is not read.
          assert.equals("a malformed answer", failure.name)
          assert_clean(v, name .. " value")
        else
          kinds[err.kind] = true
          assert_clean(err, name .. " error")
          assert.is_nil(tostring(err):find(MARK, 1, true))
        end
        assert.equals(200, (emu:control("DELETE", "/_emulator/faults")))
      end
      assert.is_nil(next(kinds, next(kinds)), "one kind of error per failure")
      assert.is_true(#lines > 0)
      assert_clean(lines, "log")
    end)
  end

  -- A server (or a gateway before it) whose error quotes the request: the
  -- token is cut out by the transport, the secret values the request carried
  -- by the error's reader, and control characters become spaces.
  it("cuts them out of error messages that echo them, single calls and batches alike", function()
    local echo = { status = 400, count = 100, error = {
      code = "bad_" .. SECRET, message = "bad value " .. SECRET .. "\n\27[31mfor Bearer " .. TOKEN } }
    local calls = {
      import = OPS.import, update = OPS.update, update_partial = OPS.update_partial,
      update_secrets = OPS.update_secrets,
      import_many = function(i) return nil, i:import_many({ { id = "db_1", body = import_body() } })[1].err end,
      update_many = function(i) return nil, i:update_many({ { id = "db_1", body = { secrets = secrets() } } })[1].err end,
    }
    for name, call in pairs(calls) do
      emu:control("POST", "/_emulator/faults", echo)
      local inst = installation()
      local v, err = call(inst)
      inst:close()
      assert.is_nil(v, name)
      assert.equals(400, err.status)
      assert.equals("bad value [secret]  [31mfor Bearer [token]", err.api_message)
      assert.equals("bad_[secret]", err.code)
      assert_clean(err, name .. " error")
      assert.is_nil(tostring(err):find("%c"), name)
      emu:control("DELETE", "/_emulator/faults")
    end
    -- What a request did not carry cannot be recognised, but the token can.
    emu:control("POST", "/_emulator/faults", echo)
    local inst = installation()
    local _, err = inst:get("db_1")
    inst:close()
    assert.equals("bad value val-SECRET-MARKER-51e2b8  [31mfor Bearer [token]", err.api_message)
  end)

  -- Wherever the server puts them: the request id header, JSON escapes
  -- (\u0041) that the transport's raw cut cannot see, the `limit`
  -- object (keys too), and a secret that starts with another (cut longest
  -- first, or the longer one's tail would show).
  it("cuts them wherever an answer echoes them, however they are written", function()
    local LONG = SECRET .. "-" .. MARK
    local function both() return { { name = "A", value = SECRET }, { name = "B", value = LONG } } end
    local function esc(text) return (text:gsub(".", function(c) return ("\\u%04X"):format(c:byte()) end)) end
    local body = ('{"error":{"code":"rate_limited","message":"%s %s %s","limit":{"echo":"%s","list":["%s"],"%s":1}}}')
      :format(esc(TOKEN), esc(LONG), (SECRET:gsub("S", "\\u0053")), SECRET, esc(TOKEN), SECRET)
    local fault = { status = 429, retry_after = 3600, count = 100, body = body,
      headers = { ["x-vercel-id"] = "id-" .. TOKEN .. "-" .. LONG } }
    local calls = {
      update_secrets = function(i) return i:update_secrets("db_1", both()) end,
      import_many = function(i)
        local body_ = import_body()
        body_.secrets = both()
        return nil, i:import_many({ { id = "db_1", body = body_ } })[1].err
      end,
    }
    for name, call in pairs(calls) do
      emu:control("POST", "/_emulator/faults", fault)
      local inst = installation()
      local v, err = call(inst)
      inst:close()
      assert.is_nil(v, name)
      assert.equals(429, err.status)
      assert.equals("[token] [secret] [secret]", err.api_message)
      assert.equals("id-[token]-[secret]", err.request_id)
      assert.same({ echo = "[secret]", list = { "[token]" }, ["[secret]"] = 1 }, err.limit)
      assert_clean(err, name .. " error")
      emu:control("DELETE", "/_emulator/faults")
    end
    assert_clean(lines, "log")
    -- An id longer than the 127 bytes kept, the secret across the cut; a
    -- decode error's id; two secrets that overlap, echoed as one run.
    local TAIL = SECRET:sub(-6) .. "-TAIL-" .. MARK -- starts with SECRET's end
    local function three() return { { name = "A", value = SECRET }, { name = "B", value = TAIL } } end
    local cases = {
      { fault = { status = 400, error = { code = "bad", message = "no" }, headers = { ["x-vercel-id"] = ("A"):rep(100) .. LONG } },
        call = function(i) return i:update_secrets("db_1", both()) end },
      { fault = { status = 200, body = "not json", headers = { ["x-vercel-id"] = "iad1::" .. LONG } },
        call = function(i) return i:update("db_1", { secrets = both() }) end, kind = "decode" },
      { fault = { status = 400, error = { code = "bad", message = "got " .. SECRET:sub(1, -7) .. TAIL } },
        call = function(i) return i:update_secrets("db_1", three()) end, message = "got [secret]" },
    }
    for n, case in ipairs(cases) do
      emu:control("POST", "/_emulator/faults", case.fault)
      local inst = installation()
      local v, err = case.call(inst)
      inst:close()
      assert.is_nil(v, n)
      assert.equals(case.kind or "http", err.kind, n)
      if case.message then assert.equals(case.message, err.api_message) end
      assert_clean(err, "case " .. n)
      emu:control("DELETE", "/_emulator/faults")
    end
    assert_clean(lines, "log")
    -- Bytes a terminal could not show, and an id longer than the 1023 bytes
    -- a transport keeps: redacted before anything is replaced or cut.
    local UMLAUT = "p\195\164ssw\195\182rt-" .. MARK
    local function umlaut() return { { name = "U", value = UMLAUT } } end
    for n, case in ipairs({
      { header = "fra1::" .. UMLAUT, want = "fra1::[secret]" },
      { header = ("A"):rep(1000) .. UMLAUT, want = nil },
    }) do
      emu:control("POST", "/_emulator/faults", { status = 400, error = { code = "bad", message = "no" },
        headers = { ["x-vercel-id"] = case.header } })
      local inst = installation()
      local _, err = inst:update_secrets("db_1", umlaut())
      inst:close()
      assert.equals(case.want, err.request_id, n)
      assert_clean(err, "request id case " .. n)
      emu:control("DELETE", "/_emulator/faults")
    end
    assert_clean(lines, "log")
    -- A successful answer's request id, in the log.
    emu:control("POST", "/_emulator/faults", { delay = 0, count = 10, headers = { ["x-vercel-id"] = "ok-" .. TOKEN } })
    local inst = installation()
    assert(inst:get("db_1"))
    inst:close()
    assert.matches("ok%-%[token%]", lines[#lines])
    assert_clean(lines, "log")
  end)

  it("keeps them off stderr with MARKETPLACE_DEBUG=1, whatever happens", function()
    local script = ([[
      local m = require "vercel.marketplace"
      local TOKEN, SECRET, URL, CLOSED = %q, %q, %q, %q
      local function secrets() return { { name = "URL", value = SECRET, environmentOverrides = { preview = SECRET } } } end
      local function ctl(method, path, body)
        local cmd = "curl -s -o /dev/null -H 'Content-Type: application/json' -X " .. method .. " " .. URL .. path
        if body then cmd = cmd .. " -d '" .. body .. "'" end
        os.execute(cmd)
      end
      local function all(inst)
        local out = {}
        out[#out + 1] = { inst:import("db_2", { productId = "p", name = "n", status = "ready", secrets = secrets() }) }
        out[#out + 1] = { inst:update("db_2", { secrets = secrets() }) }
        out[#out + 1] = { inst:get("db_2") }
        out[#out + 1] = { inst:list() }
        out[#out + 1] = { inst:update_secrets("db_2", secrets()) }
        out[#out + 1] = { inst:delete("db_2") }
        out[#out + 1] = { inst:import("db_2", { productId = "p", name = "n", status = "nope", secrets = secrets() }) }
        for _, r in ipairs(out) do io.stderr:write(tostring(r[1]), " ", tostring(r[2]), "\n") end
      end
      local function inst(o)
        o.token = o.token or TOKEN
        o.base_url = o.base_url or URL
        o.retries, o.retry_base = 1, 0.01
        return m.installation("icfg_s", o)
      end
      all(inst({}))
      ctl("POST", "/_emulator/faults", '{"status":503,"count":100}')
      all(inst({}))
      ctl("DELETE", "/_emulator/faults")
      ctl("POST", "/_emulator/faults", '{"action":"drop","count":100}')
      all(inst({}))
      ctl("DELETE", "/_emulator/faults")
      ctl("POST", "/_emulator/faults", '{"action":"hang","count":100}')
      all(inst({ timeout = 0.3 }))
      ctl("DELETE", "/_emulator/faults")
      all(inst({ token = TOKEN .. "-wrong" }))
      all(inst({ base_url = CLOSED }))
      io.stderr:write(tostring(inst({})), "\n")
      print("done")
    ]]):format(TOKEN, SECRET, emu.url, "http://127.0.0.1:" .. helper.closed_port())
    local ok, out = helper.run_lua(script, { MARKETPLACE_DEBUG = "1" })
    assert.is_true(ok, out)
    assert.matches("done", out)
    assert.matches("vercel%.marketplace: PUT /v1/installations/icfg_s/resources/db_2 %-> 200", out)
    assert.matches("%-> 503", out)
    assert.matches("%-> 401", out)
    assert.matches("%-> timeout", out)
    assert.matches("%-> transport", out)
    assert.is_nil(out:find(MARK, 1, true), out)
  end)
end)
