-- Faults and the rate limit: what a test asks the emulator to do wrong.
-- A fault matches by method and raw path, answers in place of the real
-- handler (or misbehaves at the connection level), and is used up after
-- `count` matches. Faults are tried in the order they were added.
local reply = require "vercel.marketplace.emulator.reply"

local M = {}

local faults, next_id = {}, 0
local limit                       -- nil, or {limit, window, start, used}

local ACTIONS = { drop = true, lose = true, truncate = true, malformed = true, hang = true }
local FIELDS = { method = "string", path = "string", count = "number",
                 status = "number", error = "table", body = "string",
                 retry_after = "any", retry_after_date = "number",
                 retry_after_ms = "number", delay = "number",
                 action = "string", headers = "table" }

local HANG_LIMIT = 60             -- seconds a "hang" lasts before we give up
local MALFORMED_BODY = "<html><body>upstream said: {\"name\": oops</body></html>"
local TRUNCATED_BODY = '{"name":"the emulator cut this answer short on purpose"}'

-- Checking a fault's `path` when it is armed. Lua reports a malformed
-- pattern only when the matcher reaches the bad part, so trying it on a
-- sample passes "/%b" (no sample gets past the "/"): walk the pattern item
-- by item instead, as lstrlib's do_match and classEnd read it, and report
-- what they would raise. Anything left (LuaJIT's "pattern too complex",
-- raised only on a long enough subject) is caught when matched (M.take).
local MAX_CAPTURES = 32           -- LUA_MAXCAPTURES

-- The index after the single-character class at p[i] ("%a", "[^x]", ".")
-- or nil, message.
local function class_end(p, i)
  local c = p:sub(i, i)
  i = i + 1
  if c == "%" then
    if i > #p then return nil, "malformed pattern (ends with '%')" end
    return i + 1
  end
  if c ~= "[" then return i end
  if p:sub(i, i) == "^" then i = i + 1 end
  repeat                          -- the first character is never the closing "]"
    if i > #p then return nil, "malformed pattern (missing ']')" end
    local cc = p:sub(i, i)
    i = i + 1
    if cc == "%" and i <= #p then i = i + 1 end
  until p:sub(i, i) == "]"
  return i + 1
end

-- The index after the "%b", "%f" or back reference at p[i], or nil, message.
-- `caps` captures were opened so far; `open` lists those not closed yet.
local function special_end(p, i, caps, open)
  local n = p:sub(i + 1, i + 1)
  if n == "b" then
    if i + 3 > #p then return nil, "missing arguments to '%b'" end
    return i + 4
  elseif n == "f" then
    if p:sub(i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f' in pattern" end
    return class_end(p, i + 2)
  end
  local k = tonumber(n)               -- a back reference: to a closed capture
  for _, o in ipairs(open) do
    if o == k then k = 0 end
  end
  if k < 1 or k > caps then return nil, "invalid capture index %" .. n end
  return i + 2
end

-- pattern_error(p) -> nil, or what matching p would raise; and whether p
-- ends with an anchoring "$".
local function pattern_error(p)
  if p:find("\0", 1, true) then return "NUL in pattern" end
  local i, caps, open = p:sub(1, 1) == "^" and 2 or 1, 0, {}
  local e, err
  while i <= #p do
    local c = p:sub(i, i)
    if c == "(" then
      caps = caps + 1
      if caps > MAX_CAPTURES then return "too many captures" end
      if p:sub(i + 1, i + 1) == ")" then e = i + 2       -- "()": a position
      else open[#open + 1], e = caps, i + 1 end
    elseif c == ")" then
      if not open[1] then return "invalid pattern capture" end
      open[#open], e = nil, i + 1
    elseif c == "$" and i == #p then
      return open[1] and "unfinished capture" or nil, true
    elseif c == "%" and p:sub(i + 1, i + 1):match("^[bf%d]$") then
      e, err = special_end(p, i, caps, open)
    else
      e, err = class_end(p, i)        -- one character, maybe repeated
      if e and p:sub(e, e):match("^[%*%+%-%?]$") then e = e + 1 end
    end
    if not e then return err end
    i = e
  end
  if open[1] then return "unfinished capture" end
  return nil, false
end

-- The user's pattern anchored at both ends, unless anchored already; or
-- nil, message.
local function anchored(p)
  local err, ends = pattern_error(p)
  if err then return nil, err end
  if p:sub(1, 1) ~= "^" then p = "^" .. p end
  if not ends then p = p .. "$" end
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
    local why
    f.pattern, why = anchored(spec.path)
    if not f.pattern or not pcall(string.find, "/v1/installations/i/resources/r", f.pattern) then
      return nil, "`path` is not a valid Lua pattern: " .. tostring(why or "raises when matched")
    end
  end
  if not integer(f.count) or f.count < 1 then return nil, "`count` should be a whole number >= 1" end
  if spec.status and (not integer(spec.status) or spec.status < 100 or spec.status > 599) then
    return nil, "`status` should be an HTTP status"
  end
  if spec.action and not ACTIONS[spec.action] then
    return nil, "`action` should be one of drop, lose, truncate, malformed, hang"
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

-- take(method, path) -> the first matching fault, one count used up. A
-- pattern that raises all the same disarms its fault, logged, and is
-- passed over, so a test sees its fault missing, not every request a 500.
function M.take(method, path)
  local i = 1
  while faults[i] do
    local f = faults[i]
    local ok, hit = true, f.method == "*" or f.method == method
    if hit and f.pattern then ok, hit = pcall(string.find, path, f.pattern) end
    if not ok then
      ngx.log(ngx.WARN, "fault ", f.id, " disarmed: its path pattern raised: ", hit)
      table.remove(faults, i)
    elseif hit then
      f.count = f.count - 1
      if f.count <= 0 then table.remove(faults, i) end
      return f
    else
      i = i + 1
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
-- HTTP/2 has no raw socket (ngx.req.socket(true) is refused there):
-- announce the length, send half, then end the stream abnormally.
local function truncate_h2(f, headers, body)
  ngx.status = f.status or 200
  for k, v in pairs(headers) do ngx.header[k] = v end
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Content-Length"] = #body + 100
  ngx.header["x-vercel-id"] = reply.request_id()
  ngx.send_headers()
  ngx.print(body:sub(1, math.floor(#body / 2)))
  ngx.flush(true)
  return ngx.exit(ngx.ERROR)   -- RST_STREAM INTERNAL_ERROR; the connection lives on
end

local function truncate(f, headers)
  local body = f.body or TRUNCATED_BODY
  if ngx.req.http_version() == 2 then return truncate_h2(f, headers, body) end
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "truncate fault: no raw socket: ", err)
    return ngx.exit(444)
  end
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
  if f.action == "lose" then -- handled as usual, then the answer is lost (reply.send)
    ngx.ctx.lose_answer = true
    return
  end
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
