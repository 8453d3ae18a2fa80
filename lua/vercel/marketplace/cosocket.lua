--- The nginx transport: one attempt over an `ngx.socket.tcp` cosocket, so a
-- request waiting for the API yields to the rest of the worker instead of
-- blocking it (as `curl_easy_perform` would).
--
-- A session answers exactly like the libcurl session of csrc/session.c:
-- `perform(method, url[, body[, limit]])` -> `status, body, meta` (meta =
-- `{request_id, content_type, retry_after, reused, sent}`) or
-- `nil, "timeout"|"transport", message, retryable, sent`, `limit` bounding
-- the requests sent (the stale connection's resend below included);
-- `redact(text[, secrets])`; `close()`.
--
-- An attempt is bounded as over libcurl: `timeout` covers all of it (name
-- resolution, connect, TLS handshake, send, the whole answer) and
-- `connect_timeout` the connection (resolution and handshake included).
-- Cosocket timeouts are per operation and nginx's resolver has its own, so
-- the attempt runs on a light thread raced against a watchdog thread; the
-- loser is killed, and a killed attempt's socket is closed (never pooled).
-- What an answer may make us hold is bounded as it arrives, with libcurl's
-- limits: a header line, all headers, the body (`max_response_size`).
--
-- Connections are kept alive in nginx's cosocket pool, one pool per origin
-- (`vercel.marketplace:https://api.vercel.com:443`): every installation of a
-- worker talking to the same API shares it.  TLS is always verified, against
-- nginx's `lua_ssl_trusted_certificate`; host names need nginx's `resolver`.
--
-- Only usable where nginx lets a request yield: see `M.yieldable`.
-- @module vercel.marketplace.cosocket
local core = require "vercel.marketplace.core"
local ngx = ngx -- luacheck: ignore (nil outside nginx: this module is then never used)

local M = {}

-- Phases in which cosockets and light threads work and a request may yield.
local YIELDING = { rewrite = true, access = true, content = true, timer = true }

--- Can the running code use cosockets?  Asked per request: an installation
-- made in `init_by_lua` is used later in `content_by_lua`.
function M.yieldable()
  return ngx ~= nil and ngx.get_phase ~= nil and YIELDING[ngx.get_phase()] == true
end

local METHODS = { GET = true, PUT = true, PATCH = true, DELETE = true, POST = true }
local DEFAULT_PORT = { http = 80, https = 443 }
-- libcurl 7.88's limits: one header line must stay under CURL_MAX_HTTP_HEADER
-- (100 KB, its CRLF included), all header lines of an answer (status lines
-- and 1xx answers included) within MAX_HTTP_RESP_HEADER_SIZE (300 KB).
M.MAX_HEADER_LINE = 100 * 1024
M.MAX_HEADERS = 300 * 1024
local LINE_PIECE = 16 * 1024 -- a line is read this much at a time, at most
local READ_CHUNK = 64 * 1024 -- a body without a length, likewise
local FIELD_MAX = 127 -- the C session keeps 127 bytes of content-type
local REQUEST_ID_MAX = 1023 -- and x-vercel-id up to 1023 bytes, as it came (none when longer):
                            -- response.request_id redacts it before shortening it

-- As the C session does: printable ASCII only, so a hostile server cannot
-- put control characters into error messages and log lines.
local function printable(value)
  return (value:sub(1, FIELD_MAX):gsub("[^\32-\126]", "?"))
end

-- The token lives only in the prebuilt request headers and here, kept
-- outside the session table, so no tostring or dump of a session shows it.
local header_block = setmetatable({}, { __mode = "k" })
local token_of = setmetatable({}, { __mode = "k" })

local Session = { __name = "vercel.marketplace.cosocket_session" }
Session.__index = Session

function Session:__tostring()
  return ("%s (%s)"):format(Session.__name, self.closed and "closed" or "open")
end

--- A session for `settings` as `transport.open` passes them, User-Agent
-- included (its default is the transport's: `transport.user_agent`); the C
-- session has already checked them (token, user_agent: no CR, LF or NUL).
function M.session(settings)
  local fixed = "User-Agent: " .. settings.user_agent .. "\r\n"
      .. "Authorization: Bearer " .. settings.token .. "\r\n"
      .. "Accept: application/json\r\n"
  local s = setmetatable({
    timeout = settings.timeout or 30,
    connect_timeout = settings.connect_timeout or 10,
    max_response = settings.max_response_size or 8 * 1024 * 1024,
  }, Session)
  header_block[s], token_of[s] = fixed, settings.token
  return s
end

-- The token stays for `redact`: errors made before `close` are still cut.
function Session:close()
  self.closed = true
  header_block[self] = nil
end

--- `text` with the session's token cut out as "[token]" and each string of
-- `secrets` as "[secret]", longest first (the C core does it, for both
-- transports alike).
function Session:redact(text, secrets)
  return core.redact(text, token_of[self], secrets)
end

-- URL -> scheme, host, port, host header, path; nil for another scheme.
local function split_url(url)
  local scheme, authority, path = url:match("^(%a[%w+.-]*)://([^/]*)(.*)$")
  scheme = scheme and scheme:lower()
  if not DEFAULT_PORT[scheme] then return nil end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$") -- [IPv6]:port
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil end
  port = tonumber(port) or DEFAULT_PORT[scheme]
  if path == "" then path = "/" end
  return scheme, host, port, authority, path
end

local function now()
  ngx.update_time()
  return ngx.now()
end

-- Retry-After is delta-seconds or an HTTP-date (RFC 9110 10.2.3); -1: none.
local function parse_retry_after(v)
  local secs = v:match("^%d+%.?%d*$") and tonumber(v)
  if secs then return secs end
  local at = ngx.parse_http_time(v)
  if not at then return -1 end
  return math.max(0, at - ngx.time())
end

local function trim(v)
  return (v:gsub("^[ \t]+", ""):gsub("[ \t\r]+$", ""))
end

-- The attempt ------------------------------------------------------------------
-- `a`, one attempt's state, is shared by the attempt's thread and its
-- watchdog: the session and request, `deadline` (the whole attempt) and
-- `connect_by` (while connecting), `doing` (for a timeout's message), `sent`
-- (requests that left), `sock` (to close when the attempt is killed).

-- Milliseconds left before the nearest limit, for settimeouts (>= 1).
local function left_ms(a)
  local limit = a.connect_by and math.min(a.connect_by, a.deadline) or a.deadline
  return math.max(1, math.floor((limit - now()) * 1000))
end

local function set_timeouts(a)
  local ms = left_ms(a)
  a.sock:settimeouts(ms, ms, ms)
end

-- One line, without its line end, read LINE_PIECE bytes at a time so that a
-- line that never ends costs under `max` bytes: a line must be shorter than
-- `max`, its line end included.  Returns the line or nil, then the error
-- (nil for a line) and the bytes taken.
local function read_line(reader, max)
  local parts, n = {}, 0
  for _ = 1, max do -- each pass takes a byte at least
    local data, err = reader(LINE_PIECE)
    if not data then
      if err then return nil, err, n end
      local line = table.concat(parts)
      return line:sub(-1) == "\r" and line:sub(1, -2) or line, nil, n + 1
    end
    n = n + #data
    if n + 1 >= max then return nil, "line too long", n end
    parts[#parts + 1] = data
  end
  return nil, "line too long", n
end

-- One header into `head`.
local function add_header(head, line)
  local name, value = line:match("^([^:]+):(.*)$")
  if not name then return end
  name, value = name:lower(), trim(value)
  if name == "x-vercel-id" then head.request_id = #value <= REQUEST_ID_MAX and (value:gsub("%z", "?")) or nil
  elseif name == "content-type" then head.content_type = printable(value)
  elseif name == "retry-after" then head.ra = parse_retry_after(value)
  elseif name == "retry-after-ms" then head.ra_ms = parse_retry_after(value) / 1000
  elseif name == "content-length" then head.length = tonumber(value:match("^%d+$"))
  elseif name == "transfer-encoding" then head.chunked = value:lower():find("chunked", 1, true) ~= nil
  elseif name == "connection" then head.close = value:lower():find("close", 1, true) ~= nil
  end
end

-- One answer's status line and headers (the last one, after any 1xx).
-- Returns the head table or nil, error, bytes seen.
local function read_head(reader)
  local seen, head = 0, nil
  for _ = 1, M.MAX_HEADERS do -- each line takes a byte at least
    local line, err, n = read_line(reader, M.MAX_HEADER_LINE)
    seen = seen + n
    if not line then return nil, err == "line too long" and "header line too long" or err, seen end
    if seen > M.MAX_HEADERS then return nil, "headers too large", seen end
    if not head then
      local version, code = line:match("^HTTP/(%d%.%d) (%d%d%d)")
      if not code then return nil, "malformed status line", seen end
      head = { version = version, status = tonumber(code), ra = -1, ra_ms = -1 }
    elseif line == "" then
      if head.status >= 200 or head.status == 101 then return head end
      head = nil -- 100 Continue and friends: the real answer follows
    else
      add_header(head, line)
    end
  end
  return nil, "headers too large", seen
end

-- Body readers: the body or nil, error, bytes short (nil when unknown).
local function read_length(sock, n, max)
  if n > max then return nil, "too large" end
  if n == 0 then return "" end
  local data, err, partial = sock:receive(n)
  if data then return data end
  return nil, err, n - #(partial or "")
end

-- Trailers up to the empty line, skipped (bounded like headers).
local function skip_trailers(reader)
  local seen = 0
  for _ = 1, M.MAX_HEADERS do
    local line, err, n = read_line(reader, M.MAX_HEADER_LINE)
    if not line then return nil, err end
    seen = seen + n
    if line == "" then return true end
    if seen > M.MAX_HEADERS then return nil, "headers too large" end
  end
  return nil, "headers too large"
end

local function read_chunked(sock, reader, max)
  local parts, total = {}, 0
  for _ = 1, max + 1 do -- each chunk but the last holds a byte at least
    local line, err = read_line(reader, M.MAX_HEADER_LINE)
    if not line then return nil, err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "malformed chunk" end
    if size == 0 then
      local ok, terr = skip_trailers(reader)
      if not ok then return nil, terr end
      return table.concat(parts)
    end
    total = total + size
    if total > max then return nil, "too large" end
    local data, derr, partial = sock:receive(size + 2) -- the chunk and its CRLF
    if not data then return nil, derr, size + 2 - #(partial or "") end
    parts[#parts + 1] = data:sub(1, size)
  end
  return nil, "too large"
end

local function read_to_close(sock, max)
  local parts, total = {}, 0
  for _ = 1, max / READ_CHUNK + 2 do
    -- Never ask for more than one byte past the limit.
    local data, err, partial = sock:receive(math.min(READ_CHUNK, max - total + 1))
    data = data or partial
    total = total + #data
    if total > max then return nil, "too large" end
    parts[#parts + 1] = data
    if err == "closed" then return table.concat(parts), nil, nil, true end
    if err then return nil, err end
  end
  return nil, "too large"
end

local function read_body(sock, reader, head, method, max)
  local s = head.status
  if method == "HEAD" or s == 204 or s == 304 or (s >= 100 and s < 200) then return "" end
  if head.chunked then return read_chunked(sock, reader, max) end
  if head.length then return read_length(sock, head.length, max) end
  return read_to_close(sock, max)
end

-- The request's bytes: request line, headers, body.
local function request_bytes(s, method, authority, path, body)
  local h = { method, " ", path, " HTTP/1.1\r\nHost: ", authority, "\r\n", header_block[s] }
  if body then
    h[#h + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n"
    h[#h + 1] = body
  else
    h[#h + 1] = "\r\n"
  end
  return table.concat(h)
end

-- TLS with verification on.  lua-resty-core up to 0.1.2x asserts (raises)
-- instead of returning an error when a handshake that completed at once then
-- fails verification (lua-resty-core #499): that is a verification failure.
local function handshake(sock, host)
  local ok, session, err = pcall(sock.sslhandshake, sock, nil, host, true)
  if ok then return session, err end
  if tostring(session):find("assertion failed", 1, true) then return nil, "certificate verify failed" end
  error(session, 0)
end

-- Why a connect failed, as kind, message, retryable.  A name that does not
-- resolve is said in libcurl's words (kind and retry rule alike too).
local function connect_failure(host, port, err)
  if err:find("could not be resolved", 1, true) then return "transport", "could not resolve host: " .. host, true end
  if err:find("no resolver defined", 1, true) then
    return "transport", ("could not resolve host: %s (no resolver directive in nginx.conf)"):format(host), false
  end
  return "transport", ("failed to connect to %s port %d: %s"):format(host, port, err), true
end

local function connect_timed_out(a)
  return ("connection to %s port %d timed out after %d ms (connect_timeout)"):format(a.host, a.port,
    math.floor(a.session.connect_timeout * 1000 + 0.5))
end

-- The message of a timeout: of connecting when connect_timeout was the
-- nearer limit, else of the attempt.
local function timed_out(a)
  if a.connect_by and a.connect_by < a.deadline then return connect_timed_out(a) end
  return ("operation timed out after %d ms, %s"):format(math.floor(a.session.timeout * 1000 + 0.5), a.doing)
end

-- Connect (or take a pooled connection) and shake hands, within
-- connect_timeout.  Returns true, or nil and the failure's kind, message
-- and retryability.
local function connect(a)
  local s, host, port = a.session, a.host, a.port
  a.connect_by = now() + s.connect_timeout
  a.doing = host:find("^[%d.]+$") and ("connecting to %s port %d"):format(host, port)
      or ("resolving %s and connecting to it"):format(host)
  local sock = ngx.socket.tcp()
  a.sock = sock
  set_timeouts(a)
  local ok, err = sock:connect(host, port, { pool = "vercel.marketplace:" .. a.scheme .. "://" .. host .. ":" .. port })
  if not ok then
    if err == "timeout" then return nil, "timeout", timed_out(a), false end
    return nil, connect_failure(host, port, err)
  end
  if a.scheme == "https" and sock:getreusedtimes() == 0 then
    a.doing = "in the TLS handshake with " .. host
    set_timeouts(a)
    ok, err = handshake(sock, host)
    if not ok then
      sock:close()
      if err == "timeout" then return nil, "timeout", timed_out(a), false end
      return nil, "transport", ("TLS handshake with %s failed: %s"):format(host, err), false
    end
  end
  a.connect_by = nil
  return true
end


-- What went wrong while the answer was being read, as kind, message, retryable.
local function read_failure(a, err, short)
  local max = a.session.max_response
  if err == "timeout" then return "timeout", timed_out(a), false end
  if err == "too large" then
    return "transport", ("response larger than %d bytes (max_response_size)"):format(max), false
  end
  if err == "header line too long" then
    return "transport", ("response header line of %d bytes or more"):format(M.MAX_HEADER_LINE), false
  end
  if err == "headers too large" then
    return "transport", ("response headers larger than %d bytes"):format(M.MAX_HEADERS), false
  end
  if short then return "transport", ("transfer closed with %d bytes remaining to read"):format(short), true end
  if err == "closed" then return "transport", "connection closed before a whole answer came", true end
  if err == "connection reset by peer" then return "transport", "connection reset by peer", true end
  return "transport", "malformed answer: " .. tostring(err), false
end

-- One exchange on the connected `a.sock`.  Returns status, body, meta, or
-- nil, kind, message, retryable, and whether nothing at all was answered.
local function exchange(a)
  local s, sock = a.session, a.sock
  a.doing, a.sent = "sending the request", a.sent + 1
  set_timeouts(a)
  local ok, err = sock:send(request_bytes(s, a.method, a.authority, a.path, a.body))
  if not ok then
    sock:close()
    local kind, message, retryable = read_failure(a, err)
    return nil, kind, message, retryable, true
  end
  a.doing = "waiting for the answer's headers"
  set_timeouts(a)
  local reader = sock:receiveuntil("\n")
  local head, seen
  head, err, seen = read_head(reader)
  if not head then
    sock:close()
    local kind, message, retryable = read_failure(a, err)
    return nil, kind, message, retryable, seen == 0
  end
  local data, short, to_close
  a.doing = "reading the answer's body"
  set_timeouts(a)
  data, err, short, to_close = read_body(sock, reader, head, a.method, s.max_response)
  if not data then
    sock:close()
    return nil, read_failure(a, err, short)
  end
  local reused = sock:getreusedtimes() > 0
  if to_close or head.close or head.version == "1.0" then sock:close() else sock:setkeepalive() end
  local ra = head.ra_ms >= 0 and head.ra_ms or head.ra
  return head.status, data, {
    request_id = head.request_id, content_type = head.content_type,
    retry_after = ra >= 0 and ra or nil, reused = reused,
  }
end

-- The attempt, on its own light thread: status, body, meta or nil, kind,
-- message, retryable (`a.sent` says how many requests left).  A kept-alive
-- connection the server has closed meanwhile fails before a byte of answer:
-- then it tries once more on a fresh one, as libcurl does, unless the
-- caller's `limit` of requests is reached (the server may have acted on the
-- first).
local function attempt(a)
  for _ = 1, 2 do
    if a.limit and a.sent >= a.limit then
      return nil, "transport", "connection lost before an answer; not sent again (no retries left)", false
    end
    local ok, kind, message, retryable = connect(a)
    if not ok then return nil, kind, message, retryable end
    local was_reused = a.sock:getreusedtimes() > 0
    local status, rbody, meta, rretryable, silent = exchange(a)
    if status then
      meta.sent = a.sent
      -- An error answer may echo the request (a gateway's page, a message
      -- quoting a header): no error message or log line made from it may
      -- carry the token.
      if status < 200 or status >= 300 then rbody = a.session:redact(rbody) end
      return status, rbody, meta
    end
    if not (was_reused and silent and rbody == "transport") then return nil, rbody, meta, rretryable end
  end
  return nil, "transport", "connection closed before a whole answer came", true
end

local WATCHDOG = {}

-- Ends at the deadline, or sooner when connecting outlasts connect_timeout
-- (the attempt clears `connect_by` once connected, and the watchdog then
-- sleeps on to the deadline).
local function watchdog(a)
  for _ = 1, 100 do -- a pass per limit moved, a handful at most
    local t = now()
    local limit = a.connect_by and math.min(a.connect_by, a.deadline) or a.deadline
    if t >= limit then break end
    ngx.sleep(limit - t + 0.001)
  end
  return WATCHDOG
end

--- session:perform(method, url[, body[, limit]]) -> status, body, meta |
-- nil, kind, message, retryable, sent.  `limit`: how many requests the call
-- may send (1 or more; default any).  Misuse (a closed session, a bad
-- method, URL or limit) raises.
function Session:perform(method, url, body, limit)
  if self.closed then error("attempt to use a closed session", 2) end
  if not METHODS[method] then error("bad argument #1 to 'perform' (invalid option '" .. tostring(method) .. "')", 2) end
  if type(url) ~= "string" or url:find("[%z\r\n\t ]") then
    error("bad argument #2 to 'perform' (URL must not contain spaces, CR, LF or NUL)", 2)
  end
  if body ~= nil and type(body) ~= "string" then error("bad argument #3 to 'perform' (string expected)", 2) end
  if limit ~= nil and not (type(limit) == "number" and limit % 1 == 0 and limit >= 1) then
    error("bad argument #4 to 'perform' (request limit must be 1 or more)", 2)
  end
  local scheme, host, port, authority, path = split_url(url)
  if not scheme then
    return nil, "transport", "unsupported protocol or malformed URL (only http:// and https://)", false, 0
  end
  local a = { session = self, method = method, scheme = scheme, host = host, port = port, authority = authority,
              path = path, body = body, limit = limit, deadline = now() + self.timeout, sent = 0, doing = "starting" }
  local worker = ngx.thread.spawn(attempt, a)
  local dog = ngx.thread.spawn(watchdog, a)
  local ok, status, rbody, meta, retryable = ngx.thread.wait(worker, dog)
  if status == WATCHDOG then
    ngx.thread.kill(worker) -- its pending socket operation is aborted,
    if a.sock then a.sock:close() end -- and its connection closed, never pooled
    return nil, "timeout", timed_out(a), false, a.sent
  end
  ngx.thread.kill(dog)
  if not ok then
    if a.sock then a.sock:close() end
    error(status, 0)
  end
  if status then return status, rbody, meta end
  return nil, rbody, meta, retryable == true, a.sent
end

return M
