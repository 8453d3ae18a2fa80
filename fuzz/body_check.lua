-- The properties fuzz_body checks, for one built value `v` and a body kind:
--
--  1. validate and encode agree: both succeed, or both fail with the same
--     problem list (same walk, same paths, same messages);
--  2. what encode writes is strict JSON (strict_json, in C: cjson itself
--     takes nan, inf and hex) that decodes back to a table equal to `v`;
--  3. encode_value: the same for any value, free-form;
--  4. problems are well-formed: a path and a message, both strings, at most
--     MAX_ERRORS + 1 of them;
--  5. integerize neither raises nor loops, whatever it is given (cycles too).
-- Any failure raises; the harness aborts so libFuzzer keeps the input.
local core = require "vercel.marketplace.core"
local cjson = require "cjson"

local KINDS = { "import", "update", "secrets" }

local function fail(fmt, ...) error(fmt:format(...), 2) end

-- Equal as JSON says: numbers compared after the trip through a double
-- (cjson 2.1 decodes every number as a float), -0.0 keeping its sign.
local function same_number(a, b)
  if math.type(b) == "float" and math.type(a) == "integer" then a = a + 0.0 end
  if a ~= b then return false end
  return a ~= 0 or (1 / a == 1 / b) or math.type(a) == "integer" or math.type(b) == "integer"
end

local function same(a, b, depth)
  if depth > 200 then fail("compare: too deep") end
  local ta, tb = type(a), type(b)
  if ta == "number" and tb == "number" then return same_number(a, b) end
  if ta ~= tb then return false end
  if ta ~= "table" then return rawequal(a, b) end
  for k, va in next, a do
    local vb = rawget(b, k)
    if vb == nil or not same(va, vb, depth + 1) then return false end
  end
  for k in next, b do
    if rawget(a, k) == nil then return false end
  end
  return true
end

local function check_problems(errs, what)
  if type(errs) ~= "table" then fail("%s: errors is a %s", what, type(errs)) end
  local n = #errs
  if n == 0 or n > core.MAX_ERRORS + 1 then fail("%s: %d problems", what, n) end
  for i = 1, n do
    local p = errs[i]
    if type(p) ~= "table" or type(p.path) ~= "string" or type(p.message) ~= "string" then
      fail("%s: problem %d is malformed", what, i)
    end
  end
end

local function same_problems(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i].path ~= b[i].path or a[i].message ~= b[i].message then return false end
  end
  return true
end

local function check_json(json, v, what)
  if type(json) ~= "string" then fail("%s: encode returned a %s", what, type(json)) end
  local ok, at = strict_json(json)
  if not ok then fail("%s: not strict JSON at byte %d: %q", what, at, json:sub(1, 300)) end
  local dok, back = pcall(cjson.decode, json)
  if not dok then fail("%s: cjson cannot decode our JSON: %s", what, back) end
  if not same(v, back, 0) then fail("%s: round trip differs: %q", what, json:sub(1, 300)) end
end

return function(kind_index, v)
  local kind = KINDS[kind_index]
  if type(v) == "table" then
    local ok, verrs = core.validate(kind, v)
    local json, eerrs = core.encode(kind, v)
    if os.getenv("FUZZ_DEBUG") then io.stderr:write(kind, " ", tostring(json or eerrs[1].path .. ": " .. eerrs[1].message), "\n") end
    if ok == true then
      if not json then fail("%s: validate passed, encode failed", kind) end
      check_json(json, v, kind)
      -- Deterministic: the same table gives the same text.
      if core.encode(kind, v) ~= json then fail("%s: encode is not deterministic", kind) end
    else
      if ok ~= nil or json ~= nil then fail("%s: validate failed, encode did not", kind) end
      check_problems(verrs, kind)
      if not same_problems(verrs, eerrs) then fail("%s: validate and encode disagree", kind) end
    end
  end
  local json, errs = core.encode_value(v)
  if json then check_json(json, v, "encode_value")
  else check_problems(errs, "encode_value") end
  -- Last: integerize changes the table in place.
  local r = core.integerize(v)
  if not (rawequal(r, v) or (r ~= r and v ~= v)) then fail("integerize did not return its argument") end
end
