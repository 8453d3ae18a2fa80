--- Reading the API's answers: decoding, and error objects from error statuses.
--
-- Shared by every way a request is sent (one at a time, in batches, over
-- libcurl or nginx cosockets).
-- @module vercel.marketplace.response
local core = require "vercel.marketplace.core"
-- A private instance: our settings only.  NaN, Infinity and hex numbers are
-- not JSON, and cjson 2.1 would otherwise accept them in answers.  The safe
-- flavour returns nil and the message instead of raising (no pcall per answer).
local cjson = require("cjson.safe").new()
cjson.decode_invalid_numbers(false)
local errors = require "vercel.marketplace.error"

local M = {}

local REDIRECT = " (redirects are not followed)"
local REASONS = {
  [301] = "Moved Permanently" .. REDIRECT, [302] = "Found" .. REDIRECT,
  [303] = "See Other" .. REDIRECT, [307] = "Temporary Redirect" .. REDIRECT,
  [308] = "Permanent Redirect" .. REDIRECT,
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [409] = "Conflict", [410] = "Gone", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

--- Decode a JSON object.  Debian's cjson 2.1.0 gives floats and reads `[]`
-- as an empty table like `{}`, so the core restores integers (on Lua 5.3+)
-- and marks empty arrays (`core.array_mt`): a resource read back and sent
-- again keeps them.
-- @return the table, or nil and why not
function M.decode_object(body)
  local text, placeholder = core.mark_empty_arrays(body)
  local v, why = cjson.decode(text)
  if v == nil then
    if placeholder then why = select(2, cjson.decode(body)) end -- positions in the caller's text
    return nil, tostring(why)
  end
  if placeholder then v = core.restore(v) else v = core.integerize(v) end
  if type(v) ~= "table" then return nil, "not a JSON object" end
  return v
end

--- Tokens shorter than this are not cut out of text (they would match
-- ordinary words); the C session's `MIN_CUT_TOKEN` is the same.
M.MIN_TOKEN_CUT = 8

--- `text` with every occurrence of `what` (plain bytes) replaced by `with`.
function M.cut(text, what, with)
  if what == "" or not text:find(what, 1, true) then return text end
  local parts, from = {}, 1
  while true do
    local i, j = text:find(what, from, true)
    if not i then break end
    parts[#parts + 1] = text:sub(from, i - 1)
    from = j + 1
  end
  parts[#parts + 1] = text:sub(from)
  return table.concat(parts, with)
end

-- Shorter values are too likely to occur in a message by chance.
local MIN_SECRET = 4

-- The secret values (and per-environment overrides) a request body carried:
-- `secrets` as an array, or an update's `{secrets = array}`.  The body was
-- validated before it was sent, so it is plain data.
local function secret_values(sent)
  local list = type(sent) == "table" and sent.secrets
  if type(list) == "table" and type(list.secrets) == "table" then list = list.secrets end
  local out = {}
  local function add(v)
    if type(v) == "string" and #v >= MIN_SECRET then out[#out + 1] = v end
  end
  for _, secret in ipairs(type(list) == "table" and list or {}) do
    add(secret.value)
    for _, v in pairs(type(secret.environmentOverrides) == "table" and secret.environmentOverrides or {}) do add(v) end
  end
  return out
end

-- A string of the server's, fit for an error message: a secret value the
-- request carried and the server echoed is cut out (the token already is,
-- by the transports), and control characters become spaces, so a hostile
-- answer cannot forge lines in a log or drive a terminal.
local function server_text(v, secrets)
  if type(v) ~= "string" then return nil end
  for _, secret in ipairs(secrets) do v = M.cut(v, secret, "[secret]") end
  return (v:gsub("%c", " "))
end

--- The error object for an answer whose status is not 2xx; `sent` is the
-- request's body (a table), if it had one.
function M.http_error(status, body, meta, sent)
  local e = { status = status, request_id = meta.request_id, retry_after = meta.retry_after }
  local v = M.decode_object(body)
  local api = v and v.error
  if type(api) == "table" then
    local secrets = secret_values(sent)
    e.code, e.api_message = server_text(api.code, secrets), server_text(api.message, secrets)
    e.limit = type(api.limit) == "table" and api.limit or nil
  end
  local reason = REASONS[status]
  return errors.new("http", "the API answered " .. status .. (reason and (" " .. reason) or ""), e)
end

--- The error object for one failed attempt: an error status, or a transport
-- failure (`status` nil, then `body` is the kind and `meta` the message).
-- `sent`: the request's body table, if any (see `http_error`).
function M.failure(status, body, meta, sent)
  if status then return M.http_error(status, body, meta, sent) end
  return errors.new(body, meta)
end

--- The value of a successful answer: `"object"` answers are decoded JSON
-- objects, `"none"` answers (204, 201 without a body) are `true`.
-- @return the value, or nil and a `decode` error (the caller adds `method`
--  and `path`, as to the errors of `failure`)
function M.value(answer, status, body, meta)
  if answer == "none" then return true end
  local v, why = M.decode_object(body)
  if v then return v end
  return nil, errors.new("decode", ("expected a JSON object, got %s"):format(why), {
    status = status, request_id = meta.request_id,
  })
end

return M
