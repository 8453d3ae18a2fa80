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
-- again keeps them.  An integer of 2^53 or more, which a double may not hold,
-- sends the text through once more with such integers kept as text, so every
-- integer that fits a Lua integer comes back exact (5.3+; past 2^63 it is a
-- float, and on 5.1 and LuaJIT every number is a double).
-- @return the table, or nil and why not
function M.decode_object(body)
  local text, placeholder = core.mark_empty_arrays(body)
  local v, why = cjson.decode(text)
  if v == nil then
    if placeholder then why = select(2, cjson.decode(body)) end -- positions in the caller's text
    return nil, tostring(why)
  end
  local big
  if placeholder then v, big = core.restore(v) else v, big = core.integerize(v) end
  if big then v = core.restore(cjson.decode((core.mark_empty_arrays(body, true)))) end
  if type(v) ~= "table" then return nil, "not a JSON object" end
  return v
end

--- The secret values (and per-environment overrides) in `secrets`, a body's
-- `secrets` field: an array of secrets, or an update's `{secrets = array}`.
-- Added to the array `out` (default a new one), which is returned.  Other
-- shapes hold none (a body that was sent has been validated).
function M.secret_values(secrets, out)
  out = out or {}
  if type(secrets) == "table" and type(secrets.secrets) == "table" then secrets = secrets.secrets end
  for _, secret in ipairs(type(secrets) == "table" and secrets or {}) do
    if type(secret) == "table" then
      out[#out + 1] = secret.value
      for _, v in pairs(type(secret.environmentOverrides) == "table" and secret.environmentOverrides or {}) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

--- `text` fit for an error, a log line or a terminal: the token (of
-- `session`, a transport session; none when nil) and every secret value
-- `request` (the body table sent) carried are cut out, longest first, even
-- where the server echoed them JSON-escaped (this runs on decoded text), and
-- control characters become spaces, so a hostile answer cannot forge lines
-- in a log or drive a terminal.
function M.redact(text, session, request)
  local secrets = type(request) == "table" and request.secrets and M.secret_values(request.secrets) or nil
  if session then text = session:redact(text, secrets) else text = core.redact(text, nil, secrets) end
  return (text:gsub("%c", " "))
end

local REQUEST_ID_MAX = 127

--- The answer's request id (`x-vercel-id`) fit for an error or a log line:
-- redacted as `redact` does, then printable ASCII only (other bytes `?`),
-- then at most 127 bytes.  The transports keep it as it came (up to 1023
-- bytes; none when longer), so that an echoed value is cut whole before
-- anything else touches it.
function M.request_id(meta, session, request)
  local id = meta.request_id
  if not id then return nil end
  return (M.redact(id, session, request):gsub("[^\32-\126]", "?"):sub(1, REQUEST_ID_MAX))
end

local MAX_LIMIT_DEPTH = 8

-- A copy of the server's `limit` object with every string redacted (its
-- keys too): `--json` and callers print it whole.
local function redacted_copy(v, cut, depth)
  if type(v) == "string" then return cut(v) end
  if type(v) ~= "table" then return v end
  if depth > MAX_LIMIT_DEPTH then return nil end
  local out = setmetatable({}, getmetatable(v)) -- keeps an empty array marked
  for k, x in pairs(v) do
    if type(k) == "string" then k = cut(k) end
    out[k] = redacted_copy(x, cut, depth + 1)
  end
  return out
end

--- The error object for an answer whose status is not 2xx.  `request` is
-- the request's body (a table), if it had one, and `session` the transport
-- session that sent it: every string the error takes from the answer is
-- redacted with them (`redact`).
function M.http_error(status, body, meta, request, session)
  local function cut(v)
    if type(v) == "string" then return M.redact(v, session, request) end
  end
  local e = { status = status, request_id = M.request_id(meta, session, request), retry_after = meta.retry_after }
  local v = M.decode_object(body)
  local api = v and v.error
  if type(api) == "table" then
    e.code, e.api_message = cut(api.code), cut(api.message)
    e.limit = type(api.limit) == "table" and redacted_copy(api.limit, cut, 1) or nil
  end
  local reason = REASONS[status]
  return errors.new("http", "the API answered " .. status .. (reason and (" " .. reason) or ""), e)
end

--- The error object for one failed attempt: an error status, or a transport
-- failure (`status` nil, then `body` is the kind and `meta` the message).
-- `request` and `session` as for `http_error`.
function M.failure(status, body, meta, request, session)
  if status then return M.http_error(status, body, meta, request, session) end
  return errors.new(body, M.redact(meta, session, request))
end

--- The value of a successful answer: `"object"` answers are decoded JSON
-- objects, `"none"` answers (204, 201 without a body) are `true`.
-- `session` and `request` redact a decode error as `http_error`.
-- @return the value, or nil and a `decode` error (the caller adds `method`
--  and `path`, as to the errors of `failure`)
function M.value(answer, status, body, meta, session, request)
  if answer == "none" then return true end
  local v, why = M.decode_object(body)
  if v then return v end
  return nil, errors.new("decode", ("expected a JSON object, got %s"):format(why), {
    status = status, request_id = M.request_id(meta, session, request),
  })
end

return M
