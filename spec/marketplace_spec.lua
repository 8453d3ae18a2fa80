-- The client's operations against the emulator, one describe per operation,
-- as the API reference lists them.  Every request goes over real libcurl to a
-- real nginx on loopback.
local helper = require "helper"
local cjson = require "cjson"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"

local bodies = require "fixtures.bodies"

local IMPORT = bodies.import_full() -- the Import Resource reference page, every field

describe("vercel.marketplace", function()
  local emu, inst = helper.use_emulator({ token = "test-token" }), nil

  before_each(function()
    inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url, retries = 0 })
  end)

  after_each(function()
    inst:close()
  end)

  local function last_request()
    local reqs = emu:requests()
    return reqs[#reqs], #reqs
  end

  describe("installation", function()
    it("requires a token and raises on misuse", function()
      assert.has_error(function() marketplace.installation("icfg_1", {}) end,
        "option 'token' is required (the installation access token)")
      assert.has_error(function() marketplace.installation(42, { token = "t" }) end)
      assert.has_error(function() marketplace.installation("icfg_1", { token = "t", tiemout = 3 }) end,
        "unknown option 'tiemout' to 'installation'")
      assert.has_error(function() marketplace.installation("icfg_1", { token = "t", retries = -1 }) end)
      assert.has_error(function() marketplace.installation("icfg_1", { token = "t", base_url = "ftp://x" }) end)
      assert.has_error(function()
        marketplace.installation("icfg_1", { token = "t", base_url = "https://user:pw@api.vercel.com" })
      end)
      for _, bad in ipairs({ { timeout = 0 }, { timeout = "30" }, { connect_timeout = -1 },
        { max_response_size = 0 / 0 }, { max_response_size = 2 ^ 32 }, { retry_base = -1 }, { ca_file = true },
        { retries = 1.5 }, { timeout = 2e6 }, { max_response_size = 0.5 }, { max_response_size = 1000.5 } }) do
        bad.token = "t"
        local ok, msg = pcall(marketplace.installation, "icfg_1", bad)
        assert.is_false(ok)
        assert.matches("option '[%w_]+' must be", msg)
        assert.is_nil(msg:find("transport.lua", 1, true), msg) -- checked where it is given
      end
    end)

    it("refuses CR, LF or NUL in the token without echoing it", function()
      for _, bad in ipairs({ "tok\r\nX-Evil: 1", "tok\n", "tok\0en" }) do
        local ok, msg = pcall(marketplace.installation, "icfg_1", { token = bad })
        assert.is_false(ok)
        assert.matches("token", msg)
        assert.is_nil(msg:find("tok", 1, true) and msg:find("Evil", 1, true))
      end
    end)

    it("never shows the token in tostring", function()
      local s = tostring(inst)
      assert.equals("vercel.marketplace.installation(icfg_1, " .. emu.url .. ")", s)
      assert.is_nil(s:find("test-token", 1, true))
      for k, v in pairs(inst) do
        assert.is_nil(tostring(v):find("test-token", 1, true), k)
      end
    end)

    it("keeps a base URL path prefix", function()
      local pre = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url .. "/api/" })
      assert.truthy(pre:import("db_1", IMPORT))
      assert.equals("/api/v1/installations/icfg_1/resources/db_1", (last_request()).path)
      pre:close()
    end)
  end)

  it("takes any retries budget: each attempt asks the transport for what is left", function()
    -- Port 9 (discard): privileged, so no server of the suite's can take it
    -- during the 1201 attempts, as one did a port closed_port had found.
    local big = marketplace.installation("icfg_1", { token = "test-token", retries = 1200, retry_base = 0,
      max_retry_delay = 0, base_url = "http://127.0.0.1:9" })
    local out, err = big:list()
    assert.is_nil(out)
    assert.equals("transport", err.kind)
    assert.equals(1201, err.attempts, tostring(err))
    big:close()
  end)

  it("takes a retries budget too large to count (1e300) and still answers nil, err", function()
    local huge = marketplace.installation("icfg_1", { token = "test-token", retries = 1e300, base_url = emu.url })
    local out, err = huge:get("nope") -- a 404: not retried, so one attempt
    assert.is_nil(out)
    assert.equals(404, err.status)
    assert.equals(1, err.attempts)
    local results = huge:delete_many({ "nope" })
    assert.equals(404, results[1].err.status)
    huge:close()
  end)

  it("answers nil, err when the log option closes the installation meanwhile", function()
    local c
    c = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url, retries = 0,
      log = function() c:close() end })
    local out, err = c:get("nope")
    assert.is_nil(out)
    assert.equals(404, err.status)
  end)

  describe("import", function()
    it("PUTs the body as JSON and returns the decoded answer", function()
      local out, err = inst:import("db_1", IMPORT)
      assert.is_nil(err)
      assert.same({ name = "my-database" }, out)
      local req = last_request()
      assert.equals("PUT", req.method)
      assert.equals("/v1/installations/icfg_1/resources/db_1", req.path)
      assert.same(IMPORT, cjson.decode(req.body))
    end)

    it("sends the documented headers", function()
      assert.truthy(inst:import("db_1", IMPORT))
      local h = last_request().headers
      assert.equals("Bearer [token]", h.authorization)
      assert.equals("application/json", h["content-type"])
      assert.equals("application/json", h.accept)
      assert.matches("^vercel%-marketplace%-lua/" .. marketplace.VERSION:gsub("%.", "%%."), h["user-agent"])
      assert.is_nil(h.expect)
    end)

    it("is an upsert: the second import replaces and keeps the internalId", function()
      assert.truthy(inst:import("db_1", IMPORT))
      local first = assert(inst:get("db_1")).internalId
      local again = { productId = "postgres", name = "renamed", status = "pending" }
      assert.same({ name = "renamed" }, inst:import("db_1", again))
      local res = assert(inst:get("db_1"))
      assert.equals(first, res.internalId)
      assert.equals("renamed", res.name)
    end)

    it("refuses an invalid body before sending, listing every problem", function()
      local _, before = last_request()
      local out, err = inst:import("db_1", { name = 42, status = "on fire", zz = true })
      assert.is_nil(out)
      assert.equals("validation", err.kind)
      local paths = {}
      for _, p in ipairs(err.errors) do paths[p.path] = p.message end
      assert.truthy(paths.productId and paths.name and paths.status and paths.zz)
      local _, after = last_request()
      assert.equals(before, after)
    end)

    it("percent-encodes ids like encodeURIComponent", function()
      local cases = {
        ["a/b"] = "a%2Fb", ["a b"] = "a%20b", ["é"] = "%C3%A9", ["a?b#c"] = "a%3Fb%23c",
        ["100%"] = "100%25", ["-_.!~*'()"] = "-_.!~*'()", ["a/../b"] = "a%2F..%2Fb",
      }
      for id, escaped in pairs(cases) do
        assert.truthy(inst:import(id, IMPORT))
        assert.equals("/v1/installations/icfg_1/resources/" .. escaped, (last_request()).path)
        assert.equals(id, assert(inst:get(id)).id)
      end
    end)

    it("keeps empty arrays in metadata through import, get and a second import", function()
      local body = { productId = "p", name = "n", status = "ready",
                     metadata = { regions = marketplace.array(), tags = { "a" }, opts = {} } }
      assert.truthy(inst:import("db_arrays", body))
      local sent = cjson.decode((last_request()).body)
      assert.equals("table", type(sent.metadata.regions))
      assert.truthy((last_request()).body:find('"regions":[]', 1, true))
      assert.truthy((last_request()).body:find('"opts":{}', 1, true))
      local res = assert(inst:get("db_arrays"))
      assert.equals(require("vercel.marketplace.core").array_mt, getmetatable(res.metadata.regions))
      assert.truthy(inst:import("db_arrays", { productId = "p", name = "n", status = "ready", metadata = res.metadata }))
      assert.truthy((last_request()).body:find('"regions":[]', 1, true)) -- not {}: the API wants an array
    end)

    it("makes the whole URL in one piece (core.escape_id with a prefix and suffix)", function()
      local core = require "vercel.marketplace.core"
      assert.equals("a%2Fb", core.escape_id("a/b"))
      assert.equals("http://h/r/a%2Fb/secrets", core.escape_id("a/b", "http://h/r/", "/secrets"))
      assert.equals("pre/x", core.escape_id("x", "pre/"))
      local none, why = core.escape_id("..", "http://h/r/", "/secrets")
      assert.is_nil(none)
      assert.equals("must not be '.' or '..'", why)
    end)

    it("refuses ids that are empty, '.', '..' or hold control characters", function()
      local _, before = last_request()
      for _, id in ipairs({ "", ".", "..", "a\nb", "a\0b", "tab\t" }) do
        local out, err = inst:import(id, IMPORT)
        assert.is_nil(out)
        assert.equals("validation", err.kind)
        assert.equals("id", err.errors[1].path)
      end
      local _, after = last_request()
      assert.equals(before, after)
    end)

    it("raises for a wrong argument type", function()
      assert.has_error(function() inst:import(1, IMPORT) end, "bad argument #1 to 'import' (string expected, got number)")
      assert.has_error(function() inst:import("db_1", "{}") end, "bad argument #2 to 'import' (table expected, got string)")
    end)
  end)

  describe("update", function()
    before_each(function()
      assert.truthy(inst:import("db_1", IMPORT))
    end)

    it("PATCHes only the fields given; the others stay", function()
      assert.same({ name = "my-database" }, inst:update("db_1", { status = "suspended" }))
      local req = last_request()
      assert.equals("PATCH", req.method)
      assert.equals('{"status":"suspended"}', req.body)
      local res = assert(inst:get("db_1"))
      assert.equals("suspended", res.status)
      assert.equals("plan_pro", res.billingPlanId)
    end)

    it("clears the notification with a string", function()
      assert.truthy(inst:update("db_1", { notification = "" }))
      assert.is_nil(assert(inst:get("db_1")).notification)
    end)

    it("has no productId", function()
      local out, err = inst:update("db_1", { productId = "other" })
      assert.is_nil(out)
      assert.same({ { path = "productId", message = "unknown field" } }, err.errors)
    end)

    it("answers 404 for an unknown resource", function()
      local out, err = inst:update("nope", { status = "ready" })
      assert.is_nil(out)
      assert.equals("http", err.kind)
      assert.equals(404, err.status)
    end)
  end)

  describe("get", function()
    it("returns a resource object with every field the API returned", function()
      assert.truthy(inst:import("db_1", IMPORT))
      local res = assert(inst:get("db_1"))
      assert.equals("db_1", res.id)
      assert.equals("my-database", res.name)
      assert.equals("iap_postgres", res.productId)
      assert.equals("ready", res.status)
      assert.equals("plan_pro", res.billingPlanId)
      assert.same({ region = "iad1" }, res.metadata)
      assert.is_string(res.internalId)
      assert.is_nil(res.secrets)
      assert.equals("vercel.marketplace.resource(db_1)", tostring(res))
    end)

    it("keeps unknown fields and enum values from the API", function()
      emu:control("POST", "/_emulator/faults", {
        method = "GET", status = 200,
        body = '{"id":"db_1","internalId":"x","name":"n","productId":"p","status":"hibernating","newField":{"a":1}}',
      })
      local res = assert(inst:get("db_1"))
      assert.equals("hibernating", res.status)
      assert.same({ a = 1 }, res.newField)
    end)

    it("decodes JSON integers as Lua integers", function()
      assert.truthy(inst:import("db_1", { productId = "p", name = "n", status = "ready", metadata = { n = 42 } }))
      local res = assert(inst:get("db_1"))
      assert.equals(42, res.metadata.n)
      if math.type then assert.equals("integer", math.type(res.metadata.n)) end
    end)

    it("has update, delete and refresh methods", function()
      assert.truthy(inst:import("db_1", IMPORT))
      local res = assert(inst:get("db_1"))
      assert.truthy(res:update({ name = "renamed" }))
      assert.equals("my-database", res.name)
      assert.equals(res, res:refresh())
      assert.equals("renamed", res.name)
      assert.is_true(res:delete())
      local gone, err = res:refresh()
      assert.is_nil(gone)
      assert.equals(404, err.status)
    end)
  end)

  describe("list", function()
    it("answers a decode error when resources is not an array of objects", function()
      for _, body in ipairs({ '{"resources":[1,2]}', '{"resources":{"a":{}}}', '{"resources":"x"}', '{}' }) do
        emu:control("POST", "/_emulator/faults", { method = "GET", status = 200, body = body })
        local out, err = inst:list()
        assert.is_nil(out, body)
        assert.equals("decode", err.kind)
        assert.equals("GET", err.method)
        assert.equals(1, err.attempts)
      end
    end)

    it("returns every resource as an object with partnerId", function()
      assert.same({}, inst:list())
      assert.truthy(inst:import("db_1", IMPORT))
      assert.truthy(inst:import("db_2", { productId = "redis", name = "cache", status = "pending" }))
      local list = assert(inst:list())
      assert.equals(2, #list)
      assert.equals("db_1", list[1].partnerId)
      assert.equals("db_2", list[2].partnerId)
      assert.equals("vercel.marketplace.resource(db_2)", tostring(list[2]))
      assert.truthy(list[2]:update({ status = "ready" }))
      assert.equals("ready", assert(inst:get("db_2")).status)
    end)
  end)

  describe("delete", function()
    it("answers true, then the resource is gone", function()
      assert.truthy(inst:import("db_1", IMPORT))
      assert.is_true(inst:delete("db_1"))
      assert.equals("DELETE", (last_request()).method)
      local out, err = inst:delete("db_1")
      assert.is_nil(out)
      assert.equals(404, err.status)
      assert.equals("not_found", err.code)
    end)
  end)

  describe("update_secrets", function()
    before_each(function()
      assert.truthy(inst:import("db_1", IMPORT))
    end)

    local function stored()
      local _, rec = emu:control("GET", "/_emulator/resources/icfg_1/db_1")
      local names = {}
      for _, s in ipairs(rec.secrets) do names[s.name] = s.value end
      return names
    end

    it("replaces all secrets", function()
      assert.is_true(inst:update_secrets("db_1", { { name = "PASSWORD", value = "s3cret" } }))
      local req = last_request()
      assert.equals("PUT", req.method)
      assert.equals("/v1/installations/icfg_1/resources/db_1/secrets", req.path)
      assert.equals('{"secrets":[{"name":"PASSWORD","value":"s3cret"}]}', req.body)
      assert.same({ PASSWORD = "s3cret" }, stored())
    end)

    it("merges with partial = true", function()
      assert.is_true(inst:update_secrets("db_1", { { name = "PASSWORD", value = "p" } }, { partial = true }))
      assert.equals('{"secrets":[{"name":"PASSWORD","value":"p"}],"partial":true}', (last_request()).body)
      assert.same({ URL = "postgres://u:p@h/db", PASSWORD = "p" }, stored())
    end)

    it("sends an empty list as [] and validates items by path", function()
      assert.is_true(inst:update_secrets("db_1", {}))
      assert.equals('{"secrets":[]}', (last_request()).body)
      local out, err = inst:update_secrets("db_1", { { name = "A", value = "v" }, { name = "B" } })
      assert.is_nil(out)
      assert.same({ { path = "secrets[2].value", message = "is required" } }, err.errors)
    end)

    it("raises for an unknown option", function()
      assert.has_error(function() inst:update_secrets("db_1", {}, { partail = true }) end)
    end)
  end)

  describe("validate", function()
    it("checks a body offline", function()
      assert.is_true(marketplace.validate("import", IMPORT))
      assert.is_true(marketplace.validate("update", { status = "ready" }))
      local ok, err = marketplace.validate("update", { billingPlan = { id = "p", type = "x", name = "n",
        details = { { label = "a" }, { value = "v" } } } })
      assert.is_nil(ok)
      assert.equals("validation", err.kind)
      local paths = {}
      for _, p in ipairs(err.errors) do paths[#paths + 1] = p.path end
      assert.same({ "billingPlan.type", "billingPlan.details[2].label" }, paths)
      assert.has_error(function() marketplace.validate("delete", {}) end)
    end)
  end)

  describe("decode", function()
    it("reads JSON as answers are read: empty arrays and integers kept", function()
      local v = assert(marketplace.decode('{"metadata":{"tags":[],"none":{},"n":7},"list":[1,[]]}'))
      local json = core.encode("update", { metadata = v.metadata })
      for _, part in ipairs({ '"tags":[]', '"none":{}', '"n":7' }) do
        assert.truthy(json:find(part, 1, true), json)
      end
      if math.type then assert.equals("integer", math.type(v.metadata.n)) end
      assert.equals(2, #v.list)
    end)

    -- cjson reads every number as a double; integers of 2^53 and more are
    -- read again from the text.
    it("keeps every integer that fits a Lua integer exact (5.3+)", function()
      local v = assert(marketplace.decode('{"a":9007199254740993,"b":9223372036854775807,"c":-9223372036854775808,'
        .. '"d":[12345678901234567,[]],"e":1e300,"f":9223372036854775808,"g":"9007199254740993","h":2.5}'))
      assert.equals("9007199254740993", v.g)
      assert.equals(2.5, v.h)
      assert.equals(1e300, v.e)
      assert.equals(0, #v.d[2])
      if not math.type then return end -- 5.1 and LuaJIT: every number is a double
      -- alone: 2^63 - 1 reads as the double 2^63, past a Lua integer
      local max = assert(marketplace.decode('{"n":9223372036854775807}'))
      assert.equals(math.maxinteger, max.n)
      assert.equals("integer", math.type(max.n))
      assert.equals(9007199254740993, v.a)
      assert.equals(math.maxinteger, v.b)
      assert.equals(math.mininteger, v.c)
      assert.equals(12345678901234567, v.d[1])
      for _, k in ipairs({ "a", "b", "c" }) do assert.equals("integer", math.type(v[k])) end
      assert.equals("float", math.type(v.f))                   -- past 2^63: a float
      assert.equals('[12345678901234567,[]]', core.encode_value(v.d))
    end)

    it("answers a decode error for text that is not a JSON object or array; raises on misuse", function()
      for text, msg in pairs({ ["3"] = "expected a JSON object or array", ["nope"] = "invalid JSON: " }) do
        local v, err = marketplace.decode(text)
        assert.is_nil(v)
        assert.equals("decode", err.kind)
        assert.equals(1, err.message:find(msg, 1, true), err.message)
      end
      assert.has_error(function() marketplace.decode(3) end)
    end)
  end)

  describe("logging", function()
    it("hands one line per attempt to the log option, without bodies or the token", function()
      local lines = {}
      local logged = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url,
        retries = 1, retry_base = 0.01, log = function(line) lines[#lines + 1] = line end })
      emu:control("POST", "/_emulator/faults", { status = 503 })
      assert.truthy(logged:import("db_1", IMPORT))
      assert.is_nil(logged:get("nope"))
      assert.equals(3, #lines)
      assert.matches("^vercel%.marketplace: PUT /v1/installations/icfg_1/resources/db_1 %-> 503 %(attempt 1, %d+ ms%) emu", lines[1])
      assert.matches("%-> 200 %(attempt 2, ", lines[2])
      assert.matches("^vercel%.marketplace: GET .* %-> 404 ", lines[3])
      for _, line in ipairs(lines) do
        assert.is_nil(line:find("test-token", 1, true))
        assert.is_nil(line:find("s3cret", 1, true))
      end
      logged:close()
    end)

    it("logs to stderr with MARKETPLACE_DEBUG=1", function()
      local ok, out = helper.run_lua(([[
        local m = require "vercel.marketplace"
        local inst = m.installation("icfg_1", { token = "test-token", base_url = %q })
        assert(inst:list())
      ]]):format(emu.url), { MARKETPLACE_DEBUG = "1" })
      assert.is_true(ok, out)
      assert.matches("vercel%.marketplace: GET /v1/installations/icfg_1/resources %-> 200", out)
      assert.is_nil(out:find("test-token", 1, true))
    end)

    it("raises for a log that is not a function", function()
      assert.has_error(function() marketplace.installation("icfg_1", { token = "t", log = "stderr" }) end,
        "option 'log' must be a function")
    end)
  end)

  describe("constants", function()
    it("offers the enums and refuses typos", function()
      assert.equals("ready", marketplace.status.ready)
      assert.equals("linked", marketplace.ownership.linked)
      assert.equals("prepayment", marketplace.billing_plan_type.prepayment)
      assert.equals("warn", marketplace.notification_level.warn)
      assert.has_error(function() return marketplace.status.redy end, "unknown status 'redy'")
    end)
  end)
end)
