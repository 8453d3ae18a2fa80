-- core.encode / core.encode_value / core.integerize: exact JSON, one walk.
local core = require "vercel.marketplace.core"
local bodies = require "fixtures.bodies"
local cjson = require "cjson"

local HAS_INTEGERS = math.type ~= nil -- Lua 5.3+

local function with(base, changes)
  for k, v in pairs(changes) do base[k] = v end
  return base
end

-- encode must fail and list what validate lists.
local function encode_problems(kind, body)
  local json, errs = core.encode(kind, body)
  assert.is_nil(json)
  local _, verrs = core.validate(kind, body)
  assert.same(verrs, errs)
  local out = {}
  for i, e in ipairs(errs) do out[i] = e.path .. ": " .. e.message end
  return out
end

describe("import body", function()
  it("encodes the reference example with every field, in descriptor order", function()
    assert.equal(bodies.import_full_json, core.encode("import", bodies.import_full()))
  end)

  it("round-trips the reference example through cjson", function()
    assert.same(bodies.import_full(), cjson.decode(core.encode("import", bodies.import_full())))
  end)

  it("encodes the minimal body", function()
    assert.equal('{"productId":"p","name":"n","status":"ready"}', core.encode("import", bodies.import_min()))
  end)

  it("writes [] for an empty array field and {} for an empty free-form object", function()
    local body = with(bodies.import_min(), {
      metadata = {}, extras = {}, secrets = {},
      billingPlan = { id = "i", type = "prepayment", name = "n", details = {}, highlightedDetails = {} },
    })
    assert.equal('{"productId":"p","name":"n","status":"ready","metadata":{},'
      .. '"billingPlan":{"id":"i","type":"prepayment","name":"n","details":[],"highlightedDetails":[]},'
      .. '"extras":{},"secrets":[]}', core.encode("import", body))
  end)

  it("writes an empty environmentOverrides as {}", function()
    local body = with(bodies.import_min(), { secrets = { with(bodies.secret(), { environmentOverrides = {} }) } })
    assert.equal('{"productId":"p","name":"n","status":"ready",'
      .. '"secrets":[{"name":"URL","value":"postgres://x","environmentOverrides":{}}]}',
      core.encode("import", body))
  end)

  it("returns nil and the validate errors, and the next call is clean", function()
    local body = with(bodies.import_full(), { status = "up", zz = 1 })
    assert.same({ "status: must be one of ready, pending, onboarding, suspended, resumed, uninstalled, error",
                  "zz: unknown field" }, encode_problems("import", body))
    assert.equal('{"productId":"p","name":"n","status":"ready"}', core.encode("import", bodies.import_min()))
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.encode("delete", {}) end)
    assert.has_error(function() core.encode("import", 42) end)
  end)

  it("never runs metamethods", function()
    local body = bodies.import_full()
    body.metadata = bodies.hostile({ region = "iad1" })
    body.billingPlan.details = bodies.hostile(body.billingPlan.details)
    assert.equal(bodies.import_full_json, core.encode("import", bodies.hostile(body)))
  end)

  it("encodes a big string (8 MiB) whole", function()
    local big = ("0123456789abcdef"):rep(512 * 1024)
    local json = core.encode("import", with(bodies.import_min(), { name = big }))
    assert.equal('{"productId":"p","name":"' .. big .. '","status":"ready"}', json)
    -- and the buffer is usable again afterwards
    assert.equal('"x"', core.encode_value("x"))
  end)
end)

describe("update body", function()
  it("encodes an empty update as {}", function()
    assert.equal("{}", core.encode("update", {}))
  end)

  it("encodes notification as a string or an object", function()
    assert.equal('{"notification":""}', core.encode("update", { notification = "" }))
    assert.equal('{"notification":{"level":"warn","title":"t"}}',
      core.encode("update", { notification = { title = "t", level = "warn" } }))
  end)

  it("encodes both forms of secrets", function()
    assert.equal('{"secrets":[{"name":"URL","value":"postgres://x"}]}',
      core.encode("update", { secrets = { bodies.secret() } }))
    assert.equal('{"secrets":[]}', core.encode("update", { secrets = {} }))
    assert.equal('{"secrets":{"secrets":[{"name":"URL","value":"postgres://x"}],"partial":true}}',
      core.encode("update", { secrets = { partial = true, secrets = { bodies.secret() } } }))
    assert.equal('{"secrets":{"secrets":[]}}', core.encode("update", { secrets = { secrets = {} } }))
  end)

  it("keeps descriptor order whatever order the fields were set in", function()
    assert.equal('{"name":"n","status":"pending","ownership":"linked","extras":{"a":1}}',
      core.encode("update", { extras = { a = 1 }, ownership = "linked", status = "pending", name = "n" }))
  end)

  it("refuses productId", function()
    assert.same({ "productId: unknown field" }, encode_problems("update", { productId = "p" }))
  end)
end)

describe("secrets body", function()
  it("encodes secrets then partial", function()
    assert.equal('{"secrets":[{"name":"URL","value":"postgres://x","prefix":"PG",'
      .. '"environmentOverrides":{"production":"prod"}}],"partial":false}',
      core.encode("secrets", { partial = false, secrets = { with(bodies.secret(), {
        prefix = "PG", environmentOverrides = { production = "prod" } }) } }))
  end)

  it("encodes an empty list of secrets as []", function()
    assert.equal('{"secrets":[]}', core.encode("secrets", { secrets = {} }))
  end)

  it("writes environmentOverrides extras after the known environments", function()
    assert.equal('{"secrets":[{"name":"URL","value":"postgres://x",'
      .. '"environmentOverrides":{"preview":"p","staging":"s"}}]}',
      core.encode("secrets", { secrets = { with(bodies.secret(), {
        environmentOverrides = { staging = "s", preview = "p" } }) } }))
  end)

  it("fails on a missing secrets list", function()
    assert.same({ "secrets: is required" }, encode_problems("secrets", { partial = true }))
  end)
end)

describe("free-form values", function()
  it("encodes scalars, null and nil at the root", function()
    assert.equal('"x"', core.encode_value("x"))
    assert.equal("true", core.encode_value(true))
    assert.equal("false", core.encode_value(false))
    assert.equal("null", core.encode_value(cjson.null))
    assert.equal("null", core.encode_value(nil))
    assert.equal("3", core.encode_value(3))
    assert.equal("-2.5", core.encode_value(-2.5))
  end)

  it("encodes sequences as arrays and string-keyed maps as objects, {} when empty", function()
    assert.equal("{}", core.encode_value({}))
    assert.equal('[1,"a",{}]', core.encode_value({ 1, "a", {} }))
    assert.equal('[[1,2],{"k":[true,null]}]', core.encode_value({ { 1, 2 }, { k = { true, cjson.null } } }))
  end)

  it("escapes strings per RFC 8259 and keeps NUL bytes", function()
    assert.equal('"a\\u0000b"', core.encode_value("a\0b"))
    assert.equal('"\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\127"', core.encode_value('"\\/\b\f\n\r\t\1\31\127'))
    assert.equal('"é€😀"', core.encode_value("é€😀"))
    assert.equal('{"a\\nb":1}', core.encode_value({ ["a\nb"] = 1 }))
  end)

  it("round-trips every control byte through cjson", function()
    local s = {}
    for i = 0, 127 do s[#s + 1] = string.char(i) end
    s = table.concat(s)
    assert.equal(s, cjson.decode(core.encode_value({ s }))[1])
  end)

  it("writes floats so they read back as the same double", function()
    local values = { 0.1, 1e300, -1e-300, 1 / 3, 2 ^ -1074, 123.456, 5e-324, 1.7976931348623157e308, 2 ^ 63 }
    local decoded = cjson.decode(core.encode_value(values))
    for i, v in ipairs(values) do assert.equal(v, decoded[i]) end
    assert.equal("0.1", core.encode_value(0.1))
    assert.equal("1e+300", core.encode_value(1e300))
  end)

  it("writes integral numbers without a fraction", function()
    assert.equal("[0,1,-7,9007199254740992,1e+20]", core.encode_value({ 0, 1.0, -7, 2 ^ 53, 1e20 }))
    local zero = tonumber("0.0")
    assert.equal("-0.0", core.encode_value(-zero)) -- keeps its sign through a decoder
  end)

  if HAS_INTEGERS then
    it("writes Lua integers exactly, maxinteger and mininteger too", function()
      assert.equal("9223372036854775807", core.encode_value(math.maxinteger))
      assert.equal("-9223372036854775808", core.encode_value(math.mininteger))
      assert.equal("[9007199254740993]", core.encode_value({ 9007199254740993 }))
    end)
  end

  it("writes '.' whatever the C locale's decimal point", function()
    local loc
    for _, name in ipairs({ "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8" }) do
      loc = os.setlocale(name, "numeric")
      if loc then break end
    end
    if not loc then return end -- no comma locale installed
    local ok, json = pcall(core.encode_value, { 0.5, 1 / 3 })
    os.setlocale("C", "numeric")
    assert.is_true(ok)
    assert.equal("[0.5,0.3333333333333333]", json)
  end)

  it("gives paths relative to the root value", function()
    local function first(v)
      local json, errs = core.encode_value(v)
      assert.is_nil(json)
      return errs[1].path .. ": " .. errs[1].message
    end
    assert.equal("[2].a: expected a JSON value, got function", first({ 1, { a = print } }))
    assert.equal("a.b: must be a finite number", first({ a = { b = 0 / 0 } }))
    assert.equal(": expected a JSON value, got function", first(print))
    assert.equal(": is not valid UTF-8", first("\255"))
    assert.equal(": must be a finite number", first(-1 / 0))
    assert.equal(": array has holes", first({ 1, nil, 3 }))
    assert.equal(": key must be a string, got boolean", first({ [false] = 1 }))
    assert.equal(": table mixes integer and string keys", first({ 1, a = 1 }))
    assert.equal("[1]: expected a JSON value, got userdata", first({ io.stdout }))
    assert.equal("[1]: expected a JSON value, got thread", first({ coroutine.create(function() end) }))
  end)

  it("reports cycles", function()
    local t = {}
    t[1] = t
    assert.same({ { path = "[1]", message = "table contains itself (cycle)" } }, select(2, core.encode_value(t)))
    local m = {}
    m.a = { b = m }
    assert.same({ { path = "a.b", message = "table contains itself (cycle)" } }, select(2, core.encode_value(m)))
  end)

  it("encodes 64 levels and refuses 65; survives 100,000", function()
    assert.equal(("["):rep(63) .. "{}" .. ("]"):rep(63), core.encode_value(bodies.nested(64, 1)))
    local json, errs = core.encode_value(bodies.nested(65, "k"))
    assert.is_nil(json)
    assert.same({ { path = ("k."):rep(63) .. "k", message = "nesting deeper than 64 levels" } }, errs)
    json, errs = core.encode_value(bodies.nested(100000, 1))
    assert.is_nil(json)
    assert.equal(1, #errs)
    assert.equal(("[1]"):rep(64), errs[1].path)
  end)

  it("never runs metamethods of free-form tables", function()
    assert.equal('{"a":[1,2]}', core.encode_value(bodies.hostile({ a = bodies.hostile({ 1, 2 }) })))
  end)
end)

describe("integerize", function()
  it("returns its argument", function()
    local t = {}
    assert.equal(t, core.integerize(t))
    assert.equal("x", core.integerize("x"))
  end)

  if HAS_INTEGERS then
    it("turns integral floats into integers, in place, at any depth", function()
      local t = cjson.decode('{"n":1,"f":1.5,"a":[2,3.25,{"deep":[4]}],"big":1e300,"neg":-0.0}')
      core.integerize(t)
      assert.equal("integer", math.type(t.n))
      assert.equal("float", math.type(t.f))
      assert.equal("integer", math.type(t.a[1]))
      assert.equal("float", math.type(t.a[2]))
      assert.equal("integer", math.type(t.a[3].deep[1]))
      assert.equal("float", math.type(t.big))
      assert.equal("integer", math.type(t.neg))
      assert.equal(1, t.n)
      assert.equal(4, t.a[3].deep[1])
    end)

    it("leaves 2^63 a float and terminates on cycles", function()
      local t = { x = 2.0 ^ 63, y = 3.0 }
      t.self = t
      core.integerize(t)
      assert.equal("float", math.type(t.x))
      assert.equal("integer", math.type(t.y))
    end)
  else
    it("leaves numbers alone on Lua 5.1 and LuaJIT", function()
      local t = { n = 1, f = 1.5 }
      assert.equal(t, core.integerize(t))
      assert.same({ n = 1, f = 1.5 }, t)
    end)
  end
end)

-- A Lua table cannot tell {} from []: marketplace.array marks the arrays
-- that must stay arrays when empty, and answers come back marked.
describe("empty arrays (marketplace.array)", function()
  local marketplace = require "vercel.marketplace"
  local response = require "vercel.marketplace.response"
  local MINIMAL = function(extra) return with({ productId = "p", name = "n", status = "ready" }, extra) end

  it("writes a marked empty table as [] inside metadata, an unmarked one as {}", function()
    local json = core.encode("import", MINIMAL({ metadata = { regions = marketplace.array(), tags = {} } }))
    assert.truthy(json:find('"regions":[]', 1, true))
    assert.truthy(json:find('"tags":{}', 1, true))
    assert.equal('[[],{}]', core.encode_value({ marketplace.array(), {} }))
  end)

  it("keeps a marked table's items and returns the table it was given", function()
    local t = { "a", "b" }
    assert.equal(t, marketplace.array(t))
    assert.equal('["a","b"]', core.encode_value(t))
  end)

  it("refuses a marked table where an object belongs, and string keys in a marked one", function()
    assert.same({ "metadata: expected object, got array" }, encode_problems("import", MINIMAL({ metadata = marketplace.array() })))
    assert.same({ "billingPlan: expected object, got array" },
      encode_problems("import", MINIMAL({ billingPlan = marketplace.array() })))
    local bad = marketplace.array()
    bad.x = 1
    assert.same({ "metadata.k: marked as an array (marketplace.array) but has string keys" },
      encode_problems("import", MINIMAL({ metadata = { k = bad } })))
  end)

  it("raises for a non-table or a table with another metatable", function()
    assert.has_error(function() marketplace.array(1) end, "bad argument #1 to 'array' (table expected, got number)")
    assert.has_error(function() marketplace.array(setmetatable({}, {})) end,
      "bad argument #1 to 'array' (table has a metatable)")
  end)

  it("marks the empty arrays of a decoded answer, at any depth, and only those", function()
    local v = assert(response.decode_object('{"a":[],"o":{},"n":[[ ],{"x":[\n]}],"s":"[]","e":"\\"[]"}'))
    assert.equal(core.array_mt, getmetatable(v.a))
    assert.is_nil(getmetatable(v.o))
    assert.equal(core.array_mt, getmetatable(v.n[1]))
    assert.equal(core.array_mt, getmetatable(v.n[2].x))
    assert.equal("[]", v.s)
    assert.equal('"[]', v.e)
    local json = core.encode("import", MINIMAL({ metadata = v })) -- sent back as it came
    for _, part in ipairs({ '"a":[]', '"o":{}', '"n":[[],{"x":[]}]', '"s":"[]"', '"e":"\\"[]"' }) do
      assert.truthy(json:find(part, 1, true), part)
    end
  end)

  it("leaves a string that looks like its placeholder a string (a hostile answer)", function()
    local v = assert(response.decode_object('{"a":[],"s":"\255\254[]","t":["\255\254[]"]}'))
    assert.equal("\255\254[]", v.s)
    assert.equal("\255\254[]", v.t[1])
    assert.same({}, v.a) -- that answer's empty arrays are then plain tables, as cjson reads them
  end)

  it("decodes a bare [] as a marked empty array, and reports positions in the original text", function()
    assert.equal(core.array_mt, getmetatable(response.decode_object("[ ]")))
    local _, why = response.decode_object('{"a":[],"b":x}')
    assert.equal(select(2, require("cjson.safe").decode('{"a":[],"b":x}')), why)
  end)
end)
