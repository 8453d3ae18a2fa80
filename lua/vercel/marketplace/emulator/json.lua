-- JSON for the emulator: cjson, plus the two things Debian's cjson 2.1.0
-- cannot say. (1) It decodes `[]` to an empty table and encodes every empty
-- table as `{}`, so an empty array a partner stored would come back as an
-- object. (2) It prints at most 14 significant digits, so 2^53 or 0.1+0.2
-- would come back changed. Both are fixed with placeholder strings, swapped
-- in before cjson runs and swapped back out of its text.
local cjson = require("cjson").new()   -- a private instance: our settings only

cjson.decode_invalid_numbers(false)    -- NaN, Infinity, 0x10 are not JSON
cjson.encode_invalid_numbers(false)
cjson.encode_sparse_array(true)        -- a sparse array becomes an object

local M = { null = cjson.null }

-- Placeholders carry a random tag drawn once per process: a partner's string
-- cannot contain it by chance, and it never leaves the process (every
-- placeholder is swapped back before the text is answered or saved).
local function random_tag()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(8) or tostring(os.time()) .. tostring({})
  if f then f:close() end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local TAG = "emu" .. random_tag()
local EMPTY_MARK = "\0" .. TAG .. "[]"          -- a string standing for []
local EMPTY_TEXT = '"\\u0000' .. TAG .. '[]"'   -- how cjson prints it
local NUM_PREFIX = "\0" .. TAG .. "#"
local NUM_PATTERN = '"\\u0000' .. TAG .. '#([^"]*)"'
local TAG_TEXT = "\\u0000" .. TAG

local EMPTY = setmetatable({}, { __newindex = function()
  error("json.empty_array is shared and read-only", 2)
end })
M.empty_array = EMPTY

-- An array to encode as `[]` even when it is empty.
function M.array(t)
  if next(t) == nil then return EMPTY end
  return t
end

-- Position just after the string literal that starts at `i` (a quote).
local function skip_string(text, i)
  local pos = i + 1
  while true do
    local j, _, c = text:find('(["\\])', pos)
    if not j then return #text + 1 end   -- unterminated: cjson will say so
    if c == '"' then return j + 1 end
    pos = j + 2                          -- jump over the escaped character
  end
end

-- Replace each structural `[ ]` (outside string literals) with the placeholder.
local function mark_empty_arrays(text)
  local out, last, pos, found = {}, 1, 1, false
  while true do
    local i, _, c = text:find('([%["])', pos)
    if not i then break end
    if c == '"' then
      pos = skip_string(text, i)
    else
      local _, j = text:find("^%[%s*%]", i)
      if j then
        out[#out + 1] = text:sub(last, i - 1)
        out[#out + 1] = EMPTY_TEXT
        last, found = j + 1, true
      end
      pos = (j or i) + 1
    end
  end
  if not found then return text, false end
  out[#out + 1] = text:sub(last)
  return table.concat(out), true
end

-- Swap the placeholders cjson decoded back into empty arrays.
local function restore_empty(v)
  if v == EMPTY_MARK then return EMPTY end
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do v[k] = restore_empty(x) end
  return v
end

-- decode(text) -> value | nil, message (never raises)
function M.decode(text)
  local marked, found = mark_empty_arrays(text)
  local ok, v = pcall(cjson.decode, marked)
  if not ok then return nil, (tostring(v):gsub("^.-:%d+: ", "")) end
  if found then v = restore_empty(v) end
  return v
end

-- A number cjson would print inexactly becomes a placeholder string that
-- carries the exact text.
local function exact_number(n)
  if n ~= n or n == math.huge or n == -math.huge then return n end
  if tonumber(string.format("%.14g", n)) == n then return n end
  if n == math.floor(n) and math.abs(n) < 2^63 then
    return NUM_PREFIX .. string.format("%d", n)
  end
  return NUM_PREFIX .. string.format("%.17g", n)
end

-- A copy that cjson can print exactly; the caller's value is not touched.
local function prepare(v, depth)
  if depth > 1000 then error("json: nesting too deep", 0) end
  local t = type(v)
  if t == "number" then return exact_number(v) end
  if t ~= "table" then return v end
  if v == EMPTY then return EMPTY_MARK end
  local copy = {}
  for k, x in pairs(v) do copy[k] = prepare(x, depth + 1) end
  return copy
end

-- cjson writes "/" as "\/"; JavaScript (and so Vercel) does not. A run of
-- backslashes before "/" is odd only when its last one escapes the slash.
local function unescape_slash(bs)
  if #bs % 2 == 1 then return bs:sub(2) .. "/" end
end

-- encode(value) -> text (raises on values JSON cannot hold, like cjson)
function M.encode(v)
  local text = cjson.encode(prepare(v, 0))
  if text:find("\\/") then text = text:gsub("(\\+)/", unescape_slash) end
  if text:find(TAG_TEXT, 1, true) then
    text = text:gsub(NUM_PATTERN, "%1")
    text = text:gsub(EMPTY_TEXT:gsub("%p", "%%%0"), "[]")
  end
  return text
end

return M
