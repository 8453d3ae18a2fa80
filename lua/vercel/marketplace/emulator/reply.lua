-- Writing answers the way Vercel does: an x-vercel-id on every one, JSON
-- bodies with an exact Content-Length, errors as {"error": {code, message}}.
local json = require "vercel.marketplace.emulator.json"

local M = {}

local served = 0

-- Vercel ids look like "fra1::iad1::abcde-1700000000000-0123456789ab"; ours
-- only need to be unique and recognisable.
function M.request_id()
  served = served + 1
  return string.format("emu1::%d-%08x", served, math.random(0, 0x7fffffff))
end

local CODES = {
  [400] = { "bad_request", "Bad request" },
  [401] = { "forbidden", "Not authorized" },
  [403] = { "forbidden", "You do not have permission to access this resource" },
  [404] = { "not_found", "Not found" },
  [405] = { "method_not_allowed", "Method not allowed" },
  [409] = { "conflict", "Conflict" },
  [410] = { "gone", "Installation not found" },
  [413] = { "payload_too_large", "Request body too large" },
  [415] = { "unsupported_media_type", "Unsupported media type" },
  [422] = { "unprocessable_entity", "Unprocessable entity" },
  [429] = { "rate_limited", "Rate limit exceeded" },
  [500] = { "internal_server_error", "An unexpected internal error occurred" },
  [502] = { "bad_gateway", "Bad gateway" },
  [503] = { "service_unavailable", "Service unavailable" },
  [504] = { "gateway_timeout", "Gateway timeout" },
}

-- The default error object for a status (used by faults and by us).
function M.default_error(status)
  local c = CODES[status] or { status < 500 and "bad_request" or "internal_server_error",
                               "HTTP " .. status }
  return { code = c[1], message = c[2] }
end

-- send(status, body_text, headers?): the one place answers leave. Sets the
-- request id unless a caller chose one, and always a Content-Length so
-- empty bodies are not sent chunked. Headers go out before ngx.exit, or an
-- empty 4xx/5xx would be replaced by nginx's own error page.
function M.send(status, text, headers)
  -- The `lose` fault: the request has taken effect, its answer is lost
  -- (the connection closes without a word), as on a dropped connection.
  if ngx.ctx.lose_answer then return ngx.exit(444) end
  text = text or ""
  ngx.status = status
  for name, value in pairs(headers or {}) do ngx.header[name] = value end
  if not ngx.header["x-vercel-id"] then ngx.header["x-vercel-id"] = M.request_id() end
  ngx.header["Content-Length"] = #text
  ngx.send_headers()
  if #text > 0 then ngx.print(text) end
  return ngx.exit(ngx.HTTP_OK)
end

function M.json(status, value, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json; charset=utf-8"
  return M.send(status, json.encode(value), headers)
end

function M.empty(status, headers)
  return M.send(status, "", headers)
end

-- error(status, code?, message?, extra?): extra fields join the error object.
function M.error(status, code, message, extra, headers)
  local e = M.default_error(status)
  local err = { code = code or e.code, message = message or e.message }
  for k, v in pairs(extra or {}) do err[k] = v end
  return M.json(status, { error = err }, headers)
end

-- Vercel validates with ajv and reports the first problem, naming the
-- field but never its value. The core gives {path, message}; the path
-- "billingPlan.details[2].label" splits into the parent and the last key.
local function split_path(path)
  local parent, last = path:match("^(.*)%.([^%.%[]+)$")
  if parent then return parent, last end
  parent, last = path:match("^(.*)(%[%d+%])$")
  if parent then return parent, last end
  return "", path
end

local function at(path)
  if path == "" then return "" end
  return "`" .. path .. "` "
end

-- The core counts array items from 1, as Lua does; ajv (and JSON) from 0.
local function zero_based(path)
  return (path:gsub("%[(%d+)%]", function(n) return "[" .. (tonumber(n) - 1) .. "]" end))
end

-- Sentence for one core error, in ajv's words where ajv has a word.
function M.validation_message(e)
  local path, msg = zero_based(tostring(e.path or "")), tostring(e.message or "is invalid")
  local parent, last = split_path(path)
  local text
  if msg == "unknown field" then
    text = at(parent) .. "should NOT have additional property `" .. last .. "`"
  elseif msg == "is required" then
    text = at(parent) .. "missing required property `" .. last .. "`"
  elseif msg:match("^expected %a+") then
    text = at(path) .. "should be " .. msg:match("^expected (%a+)")
  elseif msg:find("one of") or msg:find("allowed") or msg:find("enum") then
    text = at(path) .. "should be equal to one of the allowed values"
  elseif msg:find("pattern") or msg:find("format") or msg:find("url") then
    text = at(path) .. "should match format \"uri\""
  else
    -- Unknown wording: keep the core's message, minus anything quoted
    -- (it could be the offending value).
    text = at(path) .. msg:gsub("%b''", "value"):gsub('%b""', "value")
  end
  return "Invalid request: " .. text .. "."
end

return M
