-- Faults and the rate limit: what a test asks the emulator to do wrong.
-- A fault matches by method and raw path, answers in place of the real
-- handler (or misbehaves at the connection level), and is used up after
-- `count` matches. Faults are tried in the order they were added.
local reply = require "vercel.marketplace.emulator.reply"

local M = {}

local faults, next_id = {}, 0
local limit                       -- nil, or {limit, window, start, used}

local ACTIONS = { drop = true, truncate = true, malformed = true, hang = true }
local FIELDS = { method = "string", path = "string", count = "number",
                 status = "number", error = "table", body = "string",
                 retry_after = "any", retry_after_date = "number",
                 retry_after_ms = "number", delay = "number",
                 action = "string", headers = "table" }

local HANG_LIMIT = 60             -- seconds a "hang" lasts before we give up
local MALFORMED_BODY = "<html><body>upstream said: {\"name\": oops</body></html>"
local TRUNCATED_BODY = '{"name":"the emulator cut this answer short on purpose"}'

-- A user pattern anchored at both ends, unless the user anchored it already.
local function anchor(p)
  if p:sub(1, 1) ~= "^" then p = "^" .. p end
  if p:sub(-1) ~= "$" or p:sub(-2) == "%$" then p = p .. "$" end
  return p
end

local function integer(n) return type(n) == "number" and n == math.floor(n) end

-- Field-by-field checks of a POST /_emulator/faults body; returns the fault
-- or nil, message.
local function check(spec)
  for k, v in pairs(spec) do
    local want = FIELDS[k]
    if not want then return nil, "unknown field `" .. tostring(k) .. "`" end
    if want ~= "any" and type(v) ~= want then return nil, "`" .. k .. "` should be " .. want end
  end
  local f = { method = (spec.method or "*"):upper(), count = spec.count or 1 }
  if spec.path then
    f.pattern = anchor(spec.path)
    if not pcall(string.find, "", f.pattern) then return nil, "`path` is not a valid Lua pattern" end
  end
  if not integer(f.count) or f.count < 1 then return nil, "`count` should be a whole number >= 1" end
  if spec.status and (not integer(spec.status) or spec.status < 100 or spec.status > 599) then
    return nil, "`status` should be an HTTP status"
  end
  if spec.action and not ACTIONS[spec.action] then
    return nil, "`action` should be one of drop, truncate, malformed, hang"
  end
  if spec.error and spec.body then return nil, "give `error` or `body`, not both" end
  local ra = type(spec.retry_after)
  if ra ~= "nil" and ra ~= "string" and ra ~= "number" then
    return nil, "`retry_after` should be string or number"
  end
  if spec.delay and (spec.delay < 0 or spec.delay > HANG_LIMIT) then
    return nil, "`delay` should be between 0 and " .. HANG_LIMIT
  end
  for k in pairs(FIELDS) do
    if f[k] == nil then f[k] = spec[k] end
  end
  return f
end

-- add(spec) -> id | nil, message
function M.add(spec)
  local f, err = check(spec)
  if not f then return nil, err end
  next_id = next_id + 1
  f.id = next_id
  faults[#faults + 1] = f
  return f.id
end

function M.clear() faults = {} end

-- The faults still armed, as added (for GET /_emulator/faults).
function M.list() return faults end

-- take(method, path) -> the first matching fault, one count used up.
function M.take(method, path)
  for i, f in ipairs(faults) do
    if (f.method == "*" or f.method == method)
       and (not f.pattern or path:find(f.pattern)) then
      f.count = f.count - 1
      if f.count <= 0 then table.remove(faults, i) end
      return f
    end
  end
end

local function retry_headers(f)
  local h = {}
  if f.retry_after ~= nil then h["Retry-After"] = tostring(f.retry_after) end
  if f.retry_after_date then h["Retry-After"] = ngx.http_time(ngx.time() + f.retry_after_date) end
  if f.retry_after_ms then h["retry-after-ms"] = tostring(f.retry_after_ms) end
  for k, v in pairs(f.headers or {}) do h[k] = tostring(v) end
  return h
end

-- Sleep until the client gives up (lua_check_client_abort ends us then) or
-- HANG_LIMIT passes; then close without a word.
local function hang()
  for _ = 1, HANG_LIMIT * 4 do ngx.sleep(0.25) end
  return ngx.exit(444)
end

-- Announce more body than we send, then close: the client sees a short
-- read. Needs the raw socket, since nginx would fix the length otherwise.
local function truncate(f, headers)
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "truncate fault: no raw socket: ", err)
    return ngx.exit(444)
  end
  local body = f.body or TRUNCATED_BODY
  local status = f.status or 200
  local lines = { string.format("HTTP/1.1 %d Emulated\r\n", status),
                  "Content-Type: application/json; charset=utf-8\r\n",
                  "Content-Length: " .. (#body + 100) .. "\r\n",
                  "x-vercel-id: " .. reply.request_id() .. "\r\n" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v .. "\r\n" end
  lines[#lines + 1] = "\r\n"
  lines[#lines + 1] = body:sub(1, math.floor(#body / 2))
  sock:send(table.concat(lines))
  return ngx.exit(444)
end

-- Whether a fault only delays (and decorates) the real answer: a delay and
-- nothing that says what to answer.
local function passes_through(f)
  if f.action or f.error or f.body or f.status then return false end
  return f.delay ~= nil
end

-- apply(fault): answer as the fault says. Returns only when the real
-- handler should answer (after any delay, with any extra headers set).
function M.apply(f)
  if f.delay then ngx.sleep(f.delay) end
  if f.action == "drop" then return ngx.exit(444) end
  if f.action == "hang" then return hang() end
  local headers = retry_headers(f)
  if f.action == "truncate" then return truncate(f, headers) end
  if f.action == "malformed" then
    headers["Content-Type"] = "application/json; charset=utf-8"
    return reply.send(f.status or 200, f.body or MALFORMED_BODY, headers)
  end
  if passes_through(f) then
    for k, v in pairs(headers) do ngx.header[k] = v end
    return
  end
  local status = f.status or 503
  -- A success with nothing else said ({"method":"PUT","status":201}) is
  -- that status, empty, as a 204 or a secrets PUT answers: not an error.
  if status < 300 and not f.error and not f.body then return reply.empty(status, headers) end
  if f.body then
    headers["Content-Type"] = "application/json; charset=utf-8"
    return reply.send(status, f.body, headers)
  end
  return reply.json(status, { error = f.error or reply.default_error(status) }, headers)
end

-- Rate limit: a fixed window that opens with the first request after it is
-- set; within it `limit` requests pass and the rest get Vercel's 429.

-- set_rate_limit(spec) -> true | nil, message
function M.set_rate_limit(spec)
  if not integer(spec.limit) or spec.limit < 0 then return nil, "`limit` should be a whole number >= 0" end
  if type(spec.window) ~= "number" or spec.window <= 0 then return nil, "`window` should be seconds > 0" end
  limit = { limit = spec.limit, window = spec.window, used = 0 }
  return true
end

function M.clear_rate_limit() limit = nil end

-- rate_check(): answers 429 itself when the limit is spent; otherwise sets
-- the X-RateLimit headers of the coming answer and returns.
function M.rate_check()
  if not limit then return end
  local now = ngx.now()
  if not limit.start or now >= limit.start + limit.window then
    limit.start, limit.used = now, 0
  end
  local reset = limit.start + limit.window
  local h = { ["X-RateLimit-Limit"] = tostring(limit.limit),
              ["X-RateLimit-Reset"] = tostring(math.ceil(reset)) }
  if limit.used < limit.limit then
    limit.used = limit.used + 1
    h["X-RateLimit-Remaining"] = tostring(limit.limit - limit.used)
    for k, v in pairs(h) do ngx.header[k] = v end
    return
  end
  h["X-RateLimit-Remaining"] = "0"
  h["Retry-After"] = tostring(math.max(1, math.ceil(reset - now)))
  return reply.error(429, "rate_limited", "Rate limit exceeded", {
    limit = { remaining = 0, reset = math.ceil(reset), resetMs = math.floor(reset * 1000),
              total = limit.limit } }, h)
end

function M.reset()
  M.clear()
  M.clear_rate_limit()
end

return M
