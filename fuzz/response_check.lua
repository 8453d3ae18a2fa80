-- The properties fuzz_response checks, for one answer (status, body, flags):
--
--  1. nothing raises: decode_object, http_error, failure and value return;
--  2. decode_object gives a table, or nil and a string (never a Lua error);
--     a body that is a strict JSON object (strict_json) no deeper than
--     cjson's limit always decodes;
--  3. after integerize no float with an integral value in integer range is
--     left, and integerize changes nothing more a second time; no
--     empty-array placeholder is left (unless the body held its bytes);
--  4. the http error is well-formed: kind "http", the status, string or nil
--     code and api_message, a table or nil limit, a one-line tostring that
--     holds the status; value() is the decoded table or a "decode" error.
local core = require "vercel.marketplace.core"
local response = require "vercel.marketplace.response"
local errors = require "vercel.marketplace.error"

local function fail(fmt, ...) error(fmt:format(...), 2) end

local PLACEHOLDER = "\255\254[]" -- what an empty array is while cjson decodes (csrc/answer.c)

-- Float values that integerize should have turned into integers, and
-- placeholders that should have become empty arrays.
local function check_integers(t, depth, seen, placeholders)
  if depth > 1000 or seen[t] then return end
  seen[t] = true
  for k, v in next, t do
    if type(v) == "table" then check_integers(v, depth + 1, seen, placeholders)
    elseif math.type(v) == "float" and math.tointeger(v) and v ~= math.maxinteger + 1.0
        and v ~= math.mininteger + 0.0 then -- -2^63: what -9223372036854775809 rounds to, out of range
      fail("integerize left %s at key %s", tostring(v), tostring(k))
    elseif v == PLACEHOLDER and not placeholders then
      fail("an empty-array placeholder was left at key %s", tostring(k))
    end
  end
end

local function max_depth(s)
  local d, m = 0, 0
  for c in s:gmatch("[%[%]{}]") do
    if c == "[" or c == "{" then d = d + 1; if d > m then m = d end else d = d - 1 end
  end
  return m
end

return function(status, body, flags)
  local meta = {}
  if flags & 1 ~= 0 then meta.request_id = "iad1::abc-123" end
  if flags & 2 ~= 0 then meta.retry_after = (flags >> 2) * 0.5 end

  local v, why = response.decode_object(body)
  if v == nil then
    if type(why) ~= "string" then fail("decode_object: nil without a reason") end
    if body:match("^%s*{") and strict_json(body) and max_depth(body) < 1000 then
      fail("decode_object refused a strict JSON object: %s", why)
    end
  elseif type(v) ~= "table" then
    fail("decode_object returned a %s", type(v))
  else
    check_integers(v, 0, {}, body:find("\255\254", 1, true) ~= nil)
    local again = core.integerize(v)
    if again ~= v then fail("integerize did not return its argument") end
  end

  local e = response.http_error(status, body, meta)
  if not errors.is(e) or e.kind ~= "http" or e.status ~= status then fail("http_error: malformed") end
  for _, f in ipairs({ "code", "api_message" }) do
    if e[f] ~= nil and type(e[f]) ~= "string" then fail("http_error: %s is a %s", f, type(e[f])) end
  end
  if e.limit ~= nil and type(e.limit) ~= "table" then fail("http_error: limit is a %s", type(e.limit)) end
  local text = tostring(e)
  if type(text) ~= "string" or not text:find(tostring(status), 1, true) then fail("http_error: tostring") end
  if e.request_id ~= meta.request_id or e.retry_after ~= meta.retry_after then fail("http_error: meta lost") end

  local f = response.failure(status, body, meta)
  if f.kind ~= "http" then fail("failure: kind %s", tostring(f.kind)) end
  local t = response.failure(nil, "transport", body)
  -- A transport's message is the server's text too: control characters become spaces.
  if t.kind ~= "transport" or t.message ~= (body:gsub("%c", " ")) then fail("failure: transport") end
  tostring(t)

  local val, err = response.value("object", status, body, meta)
  if val == nil then
    if not errors.is(err) or err.kind ~= "decode" or err.status ~= status then fail("value: bad error") end
    tostring(err)
  elseif type(val) ~= "table" then
    fail("value: a %s", type(val))
  end
  if response.value("none", status, body, meta) ~= true then fail("value none") end
end
