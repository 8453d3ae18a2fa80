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

local function string_or_nil(v)
  return type(v) == "string" and v or nil
end

--- The error object for an answer whose status is not 2xx.
function M.http_error(status, body, meta)
  local e = { status = status, request_id = meta.request_id, retry_after = meta.retry_after }
  local v = M.decode_object(body)
  local api = v and v.error
  if type(api) == "table" then
    e.code, e.api_message = string_or_nil(api.code), string_or_nil(api.message)
    e.limit = type(api.limit) == "table" and api.limit or nil
  end
  local reason = REASONS[status]
  return errors.new("http", "the API answered " .. status .. (reason and (" " .. reason) or ""), e)
end

--- The error object for one failed attempt: an error status, or a transport
-- failure (`status` nil, then `body` is the kind and `meta` the message).
function M.failure(status, body, meta)
  if status then return M.http_error(status, body, meta) end
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
