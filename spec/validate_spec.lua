-- core.validate: every problem, at a Lua-readable path, never a caller's value.
local core = require "vercel.marketplace.core"
local helper = require "helper"
local bodies = require "fixtures.bodies"
local cjson = require "cjson"

-- The errors of validate(kind, body) as "path: message" lines, in order.
local function problems(kind, body)
  local ok, errs = core.validate(kind, body)
  assert.is_nil(ok)
  local out = {}
  for i, e in ipairs(errs) do out[i] = e.path .. ": " .. e.message end
  return out
end

local function with(base, changes)
  for k, v in pairs(changes) do base[k] = v end
  return base
end

local STATUS = "must be one of ready, pending, onboarding, suspended, resumed, uninstalled, error"

describe("import body", function()
  it("accepts the reference example with every field", function()
    assert.is_true(core.validate("import", bodies.import_full()))
  end)

  it("accepts the three required fields alone", function()
    assert.is_true(core.validate("import", bodies.import_min()))
  end)

  it("lists every missing required field at once, in descriptor order", function()
    local body = { billingPlan = {}, notification = {}, secrets = { {}, {} } }
    body.billingPlan.details = { {} }
    assert.same({
      "productId: is required",
      "name: is required",
      "status: is required",
      "billingPlan.id: is required",
      "billingPlan.type: is required",
      "billingPlan.name: is required",
      "billingPlan.details[1].label: is required",
      "notification.level: is required",
      "notification.title: is required",
      "secrets[1].name: is required",
      "secrets[1].value: is required",
      "secrets[2].name: is required",
      "secrets[2].value: is required",
    }, problems("import", body))
  end)

  it("accepts every status and rejects anything else", function()
    for _, s in ipairs(core.enums.status) do
      assert.is_true(core.validate("import", with(bodies.import_min(), { status = s })))
    end
    assert.same({ "status: " .. STATUS },
      problems("import", with(bodies.import_min(), { status = "READY" })))
  end)

  it("checks ownership, billingPlan.type and notification.level", function()
    for _, o in ipairs({ "owned", "linked", "sandbox" }) do
      assert.is_true(core.validate("import", with(bodies.import_min(), { ownership = o })))
    end
    local body = with(bodies.import_min(), {
      ownership = "mine",
      billingPlan = { id = "i", type = "monthly", name = "n" },
      notification = { level = "debug", title = "t" },
    })
    assert.same({
      "ownership: must be one of owned, linked, sandbox",
      "billingPlan.type: must be one of prepayment, subscription",
      "notification.level: must be one of info, warn, error",
    }, problems("import", body))
  end)

  it("exports the enums from the lists it checks, and the limits", function()
    assert.same({
      status = { "ready", "pending", "onboarding", "suspended", "resumed", "uninstalled", "error" },
      ownership = { "owned", "linked", "sandbox" },
      billing_plan_type = { "prepayment", "subscription" },
      notification_level = { "info", "warn", "error" },
    }, core.enums)
    assert.equal(64, core.MAX_DEPTH)
    assert.equal(100, core.MAX_ERRORS)
  end)

  it("accepts href starting with https://, http:// or sso: only", function()
    for _, h in ipairs({ "https://a.example/x", "http://a.example", "sso:" .. "abc" }) do
      local body = with(bodies.import_min(), { notification = { level = "warn", title = "t", href = h } })
      assert.is_true(core.validate("import", body), h)
    end
    for _, h in ipairs({ "ftp://a", "HTTPS://a", "javascript:x", "https:/a", "", "sso" }) do
      local body = with(bodies.import_min(), { notification = { level = "warn", title = "t", href = h } })
      assert.same({ "notification.href: must start with https://, http:// or sso:" },
        problems("import", body), h)
    end
  end)

  it("rejects unknown keys, sorted by name, at their own path", function()
    local body = with(bodies.import_min(), { zz = 1, aa = true, mm = "x" })
    assert.same({ "aa: unknown field", "mm: unknown field", "zz: unknown field" },
      problems("import", body))
  end)

  it("rejects unknown keys in details, notification and secrets", function()
    local body = with(bodies.import_full(), {})
    body.billingPlan.details[1].zz = "x"
    body.notification.extra = "x"
    body.secrets[2].kind = "x"
    assert.same({
      "billingPlan.details[1].zz: unknown field",
      "notification.extra: unknown field",
      "secrets[2].kind: unknown field",
    }, problems("import", body))
  end)

  it("allows extra keys on billingPlan and environmentOverrides, as free-form values", function()
    local body = bodies.import_full()
    body.billingPlan.tiers = { { up_to = 10, price = 0.5 } }
    body.secrets[1].environmentOverrides.staging = "s"
    assert.is_true(core.validate("import", body))
    body.billingPlan.bad = print
    body.secrets[1].environmentOverrides.other = 0 / 0
    assert.same({
      "billingPlan.bad: expected a JSON value, got function",
      "secrets[1].environmentOverrides.other: must be a finite number",
    }, problems("import", body))
  end)

  it("reports wrong types with the expected and actual type", function()
    local body = with(bodies.import_min(), {
      name = 5,
      metadata = "x",
      extras = { 1, 2 },
      billingPlan = { id = true, type = "prepayment", name = cjson.null, paymentMethodRequired = "yes",
                      details = { label = "x" } },
      notification = "clear",
      secrets = { { name = {}, value = { 1 }, environmentOverrides = { preview = 1 } } },
    })
    assert.same({
      "name: expected string, got number",
      "metadata: expected object, got string",
      "billingPlan.id: expected string, got boolean",
      "billingPlan.name: expected string, got null",
      "billingPlan.paymentMethodRequired: expected boolean, got string",
      "billingPlan.details: expected array, got object",
      "notification: expected object, got string",
      "extras: expected object, got array",
      "secrets[1].name: expected string, got object",
      "secrets[1].value: expected string, got array",
      "secrets[1].environmentOverrides.preview: expected string, got number",
    }, problems("import", body))
  end)

  it("rejects sparse and mixed arrays", function()
    local body = with(bodies.import_min(), { secrets = { bodies.secret(), nil, bodies.secret() } })
    assert.same({ "secrets: array has holes" }, problems("import", body))
    body.secrets = { bodies.secret(), name = "x" }
    assert.same({ "secrets: table mixes integer and string keys" }, problems("import", body))
    body.secrets = { [true] = bodies.secret() }
    assert.same({ "secrets: key must be a string, got boolean" }, problems("import", body))
  end)

  it("quotes keys that are not Lua identifiers", function()
    local body = with(bodies.import_min(), {
      metadata = { ["a b"] = print, ["end"] = print, ok_1 = { ['q"\n'] = print } },
    })
    local got = problems("import", body)
    table.sort(got) -- free-form maps report in lua_next order
    assert.same({
      'metadata.ok_1["q\\"\\010"]: expected a JSON value, got function',
      'metadata["a b"]: expected a JSON value, got function',
      'metadata["end"]: expected a JSON value, got function',
    }, got)
  end)

  it("rejects a non-string key in a schema object", function()
    local body = with(bodies.import_min(), { [1.5] = "x" })
    assert.same({ ": key must be a string, got number" }, problems("import", body))
  end)

  it("stops after MAX_ERRORS problems with one last entry", function()
    local body = bodies.import_min()
    for i = 1, 150 do body[("k%03d"):format(i)] = i end
    local ok, errs = core.validate("import", body)
    assert.is_nil(ok)
    assert.equal(101, #errs)
    assert.same({ path = "k001", message = "unknown field" }, errs[1])
    assert.same({ path = "k100", message = "unknown field" }, errs[100])
    assert.same({ path = "", message = "more than 100 problems; stopped" }, errs[101])
  end)

  it("reports exactly MAX_ERRORS problems without the stop entry", function()
    local body = bodies.import_min()
    for i = 1, 100 do body[("k%03d"):format(i)] = i end
    local _, errs = core.validate("import", body)
    assert.equal(100, #errs)
  end)

  it("never puts a caller's value in a message or path", function()
    local M = "SECRET-MARKER-7f3a"
    local body = {
      productId = { M }, name = M .. "\255", status = M, ownership = M,
      metadata = { k = M .. "\192\175", f = print, n = 0 / 0 },
      billingPlan = { id = M, type = M, name = M, paymentMethodRequired = M,
                      details = { { label = M .. "\237\160\128", value = { M } } } },
      notification = { level = M, title = M, href = M },
      secrets = { { name = M, value = M .. "\244\144\128\128", prefix = true } },
    }
    local ok, errs = core.validate("import", body)
    assert.is_nil(ok)
    assert.is_true(#errs >= 12)
    for _, e in ipairs(errs) do
      assert.is_nil(e.message:find(M, 1, true), e.message)
      assert.is_nil(e.path:find(M, 1, true), e.path)
    end
  end)

  it("raises on misuse: an unknown kind or a body that is not a table", function()
    assert.has_error(function() core.validate("create", {}) end)
    assert.has_error(function() core.validate(nil, {}) end)
    assert.has_error(function() core.validate("import", "{}") end)
    assert.has_error(function() core.validate("import") end)
  end)

  it("never runs metamethods of the body or of nested tables", function()
    local body = bodies.import_full()
    body.metadata = bodies.hostile({ a = bodies.hostile({ 1, 2 }) })
    body.secrets[1] = bodies.hostile(body.secrets[1])
    assert.is_true(core.validate("import", bodies.hostile(body)))
    local bad = bodies.hostile(with(bodies.import_min(), { zz = bodies.hostile({}) }))
    assert.same({ "zz: unknown field" }, problems("import", bad))
  end)

  -- Read raw, an empty proxy for a secrets list would be sent as [] and wipe
  -- every secret: it is refused, without running its metamethods.
  it("refuses a table whose metatable supplies contents (a proxy), at its path", function()
    local msg = "has a metatable with %s: pass a plain table (its contents are read raw)"
    for _, event in ipairs({ "__index", "__pairs", "__len" }) do
      local body = with(bodies.import_min(), { secrets = bodies.proxy(event) })
      assert.same({ "secrets: " .. msg:format(event) }, problems("import", body))
    end
    local body = bodies.import_full()
    body.metadata.tags = bodies.proxy()
    body.billingPlan.details[2] = bodies.proxy()
    assert.same({ "metadata.tags: " .. msg:format("__index"),
                  "billingPlan.details[2]: " .. msg:format("__index") }, problems("import", body))
    assert.same({ "secrets: " .. msg:format("__index") }, problems("secrets", { secrets = bodies.proxy() }))
    assert.same({ ": " .. msg:format("__index") }, problems("update", bodies.proxy()))
  end)

  it("accepts arrays marked with marketplace.array, the one metatable that means something", function()
    local body = with(bodies.import_min(), { secrets = setmetatable({}, core.array_mt) })
    assert.is_true(core.validate("import", body))
  end)
end)

describe("update body", function()
  it("accepts an empty body and any subset of fields", function()
    assert.is_true(core.validate("update", {}))
    assert.is_true(core.validate("update", { status = "suspended" }))
    assert.is_true(core.validate("update", { name = "x", metadata = {} }))
  end)

  it("has no productId: it is an unknown field there", function()
    assert.same({ "productId: unknown field" }, problems("update", { productId = "p" }))
  end)

  it("checks the same rules on the fields it has", function()
    assert.same({ "status: " .. STATUS, "billingPlan.id: is required", "zz: unknown field" },
      problems("update", { status = "gone", billingPlan = { type = "prepayment", name = "n" }, zz = 1 }))
  end)

  it("takes notification as an object or any string", function()
    assert.is_true(core.validate("update", { notification = "" }))
    assert.is_true(core.validate("update", { notification = { level = "error", title = "t" } }))
    assert.same({ "notification.level: is required", "notification.title: is required" },
      problems("update", { notification = {} }))
    assert.same({ "notification: expected object or string, got number" },
      problems("update", { notification = 1 }))
    assert.same({ "notification: is not valid UTF-8" }, problems("update", { notification = "\255" }))
  end)

  it("takes secrets as an array or as {secrets = array, partial?}", function()
    assert.is_true(core.validate("update", { secrets = { bodies.secret() } }))
    assert.is_true(core.validate("update", { secrets = {} }))
    assert.is_true(core.validate("update", { secrets = { secrets = { bodies.secret() }, partial = true } }))
    assert.same({ "secrets.secrets[1].value: is required", "secrets.partial: expected boolean, got string",
                  "secrets.zz: unknown field" },
      problems("update", { secrets = { secrets = { { name = "n" } }, partial = "yes", zz = 1 } }))
    assert.same({ "secrets[1].name: is required" }, problems("update", { secrets = { { value = "v" } } }))
  end)

  it("reads a table without a secrets key as the array form", function()
    assert.same({ "secrets: expected array, got object" },
      problems("update", { secrets = { partial = true } }))
    assert.same({ "secrets: expected array or object, got string" },
      problems("update", { secrets = "x" }))
  end)
end)

describe("secrets body", function()
  it("accepts secrets with and without partial", function()
    assert.is_true(core.validate("secrets", { secrets = { bodies.secret() } }))
    assert.is_true(core.validate("secrets", { secrets = {}, partial = false }))
  end)

  it("requires secrets and allows no other key", function()
    assert.same({ "secrets: is required", "partial: expected boolean, got number", "name: unknown field" },
      problems("secrets", { partial = 1, name = "x" }))
  end)

  it("checks every secret item", function()
    assert.same({ "secrets[2].value: is required",
                  "secrets[2].prefix: expected string, got boolean" },
      problems("secrets", { secrets = { bodies.secret(), { name = "a", prefix = false } } }))
  end)
end)

describe("free-form values", function()
  local function meta(v)
    return with(bodies.import_min(), { metadata = { v = v } })
  end

  it("accepts strings, numbers, booleans, null, arrays and objects, nested", function()
    assert.is_true(core.validate("import", with(bodies.import_min(), {
      metadata = { s = "é", i = 1, f = 0.5, b = false, n = cjson.null, a = { 1, "x", { k = {} } } },
      extras = {},
    })))
  end)

  it("rejects invalid UTF-8: overlong, surrogate, past U+10FFFF, truncated, stray continuation", function()
    for _, s in ipairs({ "\192\175", "\224\128\175", "\237\160\128", "\244\144\128\128",
                         "\226\130", "\240\159\152", "\128", "ok\255", "\248\136\128\128\128" }) do
      assert.same({ "metadata.v: is not valid UTF-8" }, problems("import", meta(s)))
    end
    for _, s in ipairs({ "\226\130\172", "\240\159\152\128", "\244\143\191\191", "\0", "\127", "\194\128" }) do
      assert.is_true(core.validate("import", meta(s)))
    end
  end)

  it("rejects invalid UTF-8 in keys and in schema strings", function()
    assert.same({ "name: is not valid UTF-8" },
      problems("import", with(bodies.import_min(), { name = "\237\191\191" })))
    assert.same({ 'metadata["\\255"]: key is not valid UTF-8' },
      problems("import", with(bodies.import_min(), { metadata = { ["\255"] = 1 } })))
  end)

  it("rejects NaN and infinities", function()
    for _, n in ipairs({ 0 / 0, 1 / 0, -1 / 0 }) do
      assert.same({ "metadata.v: must be a finite number" }, problems("import", meta(n)))
    end
  end)

  it("rejects functions, userdata, coroutines", function()
    assert.same({ "metadata.v: expected a JSON value, got function" }, problems("import", meta(print)))
    assert.same({ "metadata.v: expected a JSON value, got userdata" }, problems("import", meta(io.stdout)))
    assert.same({ "metadata.v: expected a JSON value, got thread" },
      problems("import", meta(coroutine.create(function() end))))
  end)

  it("reports a cycle instead of looping", function()
    local t = {}
    t.self = t
    assert.same({ "metadata.v.self: table contains itself (cycle)" }, problems("import", meta(t)))
    local body = bodies.import_min()
    body.metadata = { back = body }
    assert.same({ "metadata.back: table contains itself (cycle)" }, problems("import", body))
  end)

  it("accepts the same table twice when it is not its own ancestor", function()
    local shared = { 1 }
    assert.is_true(core.validate("import", meta({ shared, shared })))
  end)

  it("counts nesting from the body root: 64 levels pass, 65 do not", function()
    -- body (1) > metadata (2) > v (3) > ... : 62 more levels under metadata.v
    assert.is_true(core.validate("import", meta(bodies.nested(62, "a"))))
    local errs = problems("import", meta(bodies.nested(63, "a")))
    assert.same({ "metadata.v" .. (".a"):rep(62) .. ": nesting deeper than 64 levels" }, errs)
  end)

  it("survives 100,000 levels of nesting with one error", function()
    local errs = problems("import", meta(bodies.nested(100000, "a")))
    assert.equal(1, #errs)
    assert.truthy(errs[1]:find(": nesting deeper than 64 levels$"))
  end)

  it("rejects sparse arrays, non-string keys and mixed tables", function()
    assert.same({ "metadata.v: array has holes" }, problems("import", meta({ 1, nil, 3 })))
    assert.same({ "metadata.v: key must be a string, got boolean" }, problems("import", meta({ [true] = 1 })))
    assert.same({ "metadata.v: key must be a string, got number" }, problems("import", meta({ [0.5] = 1 })))
    assert.same({ "metadata.v: table mixes integer and string keys" },
      problems("import", meta({ 1, 2, x = 3 })))
    assert.same({ "metadata.v: table mixes integer and string keys" },
      problems("import", meta({ x = 3, [1] = 2 })))
  end)

  it("goes on past a bad key to the values", function()
    local errs = problems("import", meta({ [true] = 1, a = print }))
    table.sort(errs)
    assert.same({ "metadata.v.a: expected a JSON value, got function",
                  "metadata.v: key must be a string, got boolean" }, errs)
  end)
end)

-- The validator keeps pointers to the keys it reports while it allocates
-- the report, and any allocation may run a finalizer.  One that empties the
-- body meanwhile must not free the strings under it (ASan: a heap
-- use-after-free in the path rendering, before the keys were anchored).  In
-- a child interpreter: a small heap, so the collector's pace is the same
-- every run.
describe("a finalizer that empties the body while its problems are reported", function()
  it("leaves every path whole", function()
    local ok, out = helper.run_lua([[
      local m = require "vercel.marketplace"
      local garbled, fired = 0, 0
      for round = 1, 60 do
        local body, keys, expected = { productId = "p", name = "n", status = "ready" }, {}, {}
        for i = 1, 30 do
          local k = ("unknown_%d_%s_%d"):format(i, ("x"):rep(48), round) -- long: not interned
          keys[i], body[k] = k, true
          expected[("unknown_%d_%s_%d"):format(i, ("x"):rep(48), round)] = true -- same text, other strings
        end
        local calls, fire_at, done = 0, round % 60 + 1, false
        for _ = 1, 200 do
          setmetatable({}, { __gc = function()
            calls = calls + 1
            if done or calls < fire_at then return end
            done = true
            for _, k in ipairs(keys) do body[k] = nil end
            keys = nil
            for i = 1, 200 do local _ = { ("g"):rep(10000) .. i } end -- drives the collector on
          end })
        end
        collectgarbage("setpause", 0)
        collectgarbage("setstepmul", 100000)
        local _, err = m.validate("import", body)
        collectgarbage("setpause", 200)
        if done and err then fired = fired + 1 end
        for _, p in ipairs(err and err.errors or {}) do
          if not expected[p.path] or p.message ~= "unknown field" then garbled = garbled + 1 end
        end
      end
      print("garbled " .. garbled)
    ]])
    assert.is_true(ok, out)
    assert.equals("garbled 0\n", out)
  end)
end)
