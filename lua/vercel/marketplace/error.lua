--- Error objects returned as the second value of every failed call.
--
-- Every error is a table with a readable `__tostring`:
--
--  * `kind`: `"validation"` (nothing was sent), `"http"` (the API answered an
--    error status), `"timeout"` (the attempt's deadline passed), `"transport"`
--    (the connection failed), `"decode"` (an answer that is not the JSON it
--    should be) or `"interrupted"` (a SIGINT trapped by
--    `core.trap_interrupt`, as the command line does);
--  * a batch that stops early raises one (kind `"callback"`: `on_progress`
--    raised, its error in `cause`; or `"interrupted"`) with `results` (every
--    item's, each with a `state`: `"done"`, `"failed"`, `"in_flight"` or
--    `"not_started"`, the last two with an `"aborted"` error) and `counts`;
--  * `message`: one line in our words;
--  * where known: `status`, `code` and `api_message` (from the API's
--    `{"error": {...}}`), `request_id` (the `x-vercel-id` header),
--    `retry_after` (seconds), `limit` (for `rate_limited`), `method`, `path`,
--    `attempts` (how many requests reached the wire, a transport's own
--    resend on a fresh connection included);
--  * for validation, `errors`: every problem as `{path = ..., message = ...}`.
--
-- Messages never hold a request body's values or the token: what comes from
-- the server (messages, codes, `limit`, the request id) is cut of the token
-- and of the secret values the request carried, longest first.
-- @module vercel.marketplace.error
local M = {}

local Error = { __name = "vercel.marketplace.error" }
Error.__index = Error

local function where(e)
  if e.method and e.path then return (" (%s %s)"):format(e.method, e.path) end
  return ""
end

function Error.__tostring(e)
  local s = e.kind .. " error" .. where(e) .. ": " .. e.message
  if e.code then s = s .. " [" .. e.code .. "]" end
  if e.api_message then s = s .. ": " .. e.api_message end
  if e.kind == "validation" then
    local parts = {}
    for i, p in ipairs(e.errors) do
      parts[i] = (p.path == "" and "" or p.path .. ": ") .. p.message
    end
    s = s .. ": " .. table.concat(parts, "; ")
  end
  if e.request_id then s = s .. " (request id " .. e.request_id .. ")" end
  return s
end

--- Make an error object.
-- @tparam string kind one of the kinds above
-- @tparam string message
-- @tparam[opt] table fields extra fields (status, code, ...)
-- @treturn table the error
function M.new(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
  return setmetatable(e, Error)
end

--- Is `v` one of our error objects?
function M.is(v)
  return getmetatable(v) == Error
end

local function plural(n, word)
  return n == 1 and ("1 " .. word) or (n .. " " .. word .. "s")
end

--- A validation error for a `kind` body ("import", "update", "secrets").
function M.validation(kind, problems)
  return M.new("validation", ("invalid %s body, %s; nothing was sent"):format(kind, plural(#problems, "problem")),
    { errors = problems })
end

return M
