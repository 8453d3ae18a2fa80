-- Writes the seed corpus: fuzz/corpus/body/ (programs for fuzz_body, made
-- from the reference bodies) and fuzz/corpus/response/ (typical answers).
-- Run from the repository root:  lua5.4 fuzz/mkcorpus.lua
-- The program format is fuzz_body.c's gen_value; the dictionary of strings
-- is read from that file so that the indexes agree.
package.path = "spec/?.lua;lua/?.lua;" .. package.path
local cjson = require "cjson"
local bodies = require "fixtures.bodies"

local dict = {}
do
  local src = assert(io.open("fuzz/fuzz_body.c")):read("a")
  local block = src:match("static const word dict%[%] = {(.-)\n};")
  for lit in block:gmatch('W%("(.-)"%)') do
    dict[#dict + 1] = lit
    dict[lit] = dict[lit] or #dict - 1 -- 0-based, as in C; escaped ones never match
  end
end

local out = {}
local function b(...) for _, v in ipairs({ ... }) do out[#out + 1] = string.char(v) end end

local value
local function str(s)
  if dict[s] then return b(0, dict[s]) end
  assert(#s < 256, "seed strings stay short")
  b(2, #s)
  out[#out + 1] = s
end

local function key(k)
  if dict[k] then return b(dict[k]) end
  b(0xF0, #k % 16)
  out[#out + 1] = k:sub(1, 15)
end

function value(v)
  local t = type(v)
  if t == "string" then return str(v) end
  if t == "boolean" then return b(7, v and 1 or 0) end
  if v == cjson.null then return b(8) end
  if math.type(v) == "integer" then
    if v >= -128 and v <= 127 then return b(3, v & 0xFF) end
    b(4)
    out[#out + 1] = string.pack("<i8", v)
    return
  end
  if t == "number" then
    b(5)
    out[#out + 1] = string.pack("<d", v)
    return
  end
  assert(t == "table")
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n > 0 and #v == n then
    b(10, n)
    for i = 1, n do value(v[i]) end
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  b(9, #keys)
  for _, k in ipairs(keys) do
    key(k)
    value(v[k])
  end
end

local function program(kind, v)
  out = {}
  b(kind)
  value(v)
  return table.concat(out)
end

local function write(dir, name, data)
  os.execute("mkdir -p " .. dir)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

local IMPORT, UPDATE, SECRETS = 0, 1, 2
local full = bodies.import_full()
full.extras = { tier = 2, ratio = 0.25, big = math.maxinteger, list = { 1, "two", false, cjson.null }, nested = { a = { b = {} } } }
local seeds = {
  import_full = program(IMPORT, full),
  import_min = program(IMPORT, bodies.import_min()),
  update_status = program(UPDATE, { status = "suspended", notification = "" }),
  update_notification = program(UPDATE, { notification = { level = "warn", title = "t", href = "sso:x" } }),
  update_secrets_partial = program(UPDATE, { secrets = { secrets = { bodies.secret() }, partial = true } }),
  update_secrets_array = program(UPDATE, { secrets = { bodies.secret(), { name = "B", value = "c", prefix = "P" } } }),
  secrets = program(SECRETS, { secrets = { bodies.secret() }, partial = false }),
  secrets_empty = program(SECRETS, { secrets = {} }),
  invalid = program(IMPORT, { name = 42, status = "on fire", zz = true }),
}
for name, data in pairs(seeds) do write("fuzz/corpus/body", name, data) end

local answers = {
  ok_name = { 200, 0, '{"name":"my-database"}' },
  resource = { 200, 1, '{"id":"db_1","internalId":"res_abc","name":"n","productId":"p","status":"ready",'
    .. '"billingPlanId":"plan_pro","metadata":{"region":"iad1","size":10,"tags":["a","b"],"ratio":0.5},'
    .. '"protocolSettings":{"experimentation":{"edgeConfigSyncingEnabled":true}}}' },
  list = { 200, 1, '{"resources":[{"partnerId":"db_1","internalId":"r1","name":"n","productId":"p"},'
    .. '{"partnerId":"db_2","internalId":"r2","name":"m","productId":"p","status":"new-status"}]}' },
  rate_limited = { 429, 7, '{"error":{"code":"rate_limited","message":"Rate limit exceeded",'
    .. '"limit":{"remaining":0,"reset":1735689600,"resetMs":1735689600000,"total":100}}}' },
  bad_request = { 400, 1, '{"error":{"code":"bad_request","message":"should NOT have additional property `zz`"}}' },
  forbidden = { 401, 1, '{"error":{"code":"forbidden","message":"Not authorized"}}' },
  not_found = { 404, 1, '{"error":{"code":"not_found","message":"Resource not found"}}' },
  server = { 500, 0, '{"error":{"code":"internal_server_error","message":"An unexpected error occurred"}}' },
  empty = { 204, 0, "" },
  html = { 502, 0, "<html><body>Bad Gateway</body></html>" },
  weird_error = { 409, 0, '{"error":"conflict","code":[1],"message":{"x":1}}' },
  numbers = { 200, 0, '{"a":1.0,"b":-0.0,"c":1e308,"d":9007199254740993,"e":[1,2.5,[3]],"f":null,"g":"\\u00e9\\ud83d\\ude00"}' },
}
for name, a in pairs(answers) do
  local status_index
  local statuses = { 200, 201, 204, 301, 308, 400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503, 504, 418, 599, 100 }
  for i, s in ipairs(statuses) do if s == a[1] then status_index = i - 1 end end
  write("fuzz/corpus/response", name, string.char(status_index, a[2]) .. a[3])
end
print("seeds written")
