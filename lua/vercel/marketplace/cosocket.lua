--- The nginx transport: one attempt over an `ngx.socket.tcp` cosocket, so a
-- request waiting for the API yields to the rest of the worker instead of
-- blocking it (as `curl_easy_perform` would).
--
-- A session answers exactly like the libcurl session of csrc/transport.c:
-- `perform(method, url[, body])` -> `status, body, meta` (meta =
-- `{request_id, content_type, retry_after, reused}`) or
-- `nil, "timeout"|"transport", message, retryable`; `close()`.
--
-- Connections are kept alive in nginx's cosocket pool, one pool per origin
-- (`vercel.marketplace:https://api.vercel.com:443`): every installation of a
-- worker talking to the same API shares it.  TLS is always verified, against
-- nginx's `lua_ssl_trusted_certificate`; host names need nginx's `resolver`.
--
-- Only usable where nginx lets a request yield: see `M.yieldable`.
-- @module vercel.marketplace.cosocket
local response = require "vercel.marketplace.response"
local ngx = ngx -- luacheck: ignore (nil outside nginx: this module is then never used)

local M = {}

-- Phases in which cosockets work and a request may yield.
local YIELDING = { rewrite = true, access = true, content = true, timer = true }

--- Can the running code use cosockets?  Asked per request: an installation
-- made in `init_by_lua` is used later in `content_by_lua`.
function M.yieldable()
  return ngx ~= nil and ngx.get_phase ~= nil and YIELDING[ngx.get_phase()] == true
end

local METHODS = { GET = true, PUT = true, PATCH = true, DELETE = true, POST = true }
local DEFAULT_PORT = { http = 80, https = 443 }
local MAX_HEADER_BYTES = 64 * 1024 -- status line and headers together
local READ_CHUNK = 64 * 1024
local FIELD_MAX = 127 -- the C session keeps 127 bytes of x-vercel-id and content-type

-- As the C session does: printable ASCII only, so a hostile server cannot
-- put control characters into error messages and log lines.
local function printable(value)
  return (value:sub(1, FIELD_MAX):gsub("[^\32-\126]", "?"))
end

-- The token lives only in the prebuilt request headers, kept here and not
-- in a field of the session table, so no tostring or dump of it shows them.
local header_block = setmetatable({}, { __mode = "k" })

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
  header_block[s] = fixed
  return s
end

function Session:close()
  self.closed = true
  header_block[self] = nil
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

-- Seconds left before `deadline`, in milliseconds for settimeouts (>= 1).
local function left_ms(deadline)
  ngx.update_time()
  return math.max(1, math.floor((deadline - ngx.now()) * 1000))
end

-- Retry-After is delta-seconds or an HTTP-date (RFC 9110 10.2.3); -1: none.
local function parse_retry_after(v)
  local secs = v:match("^%d+%.?%d*$") and tonumber(v)
  if secs then return secs end
  local at = ngx.parse_http_time(v)
  if not at then return -1 end
  return math.max(0, at - ngx.time())
end

-- A failed attempt, in the C session's words.
local function failure(kind, message, retryable)
  return nil, kind, message, retryable == true
end

local function trim(v)
  return (v:gsub("^[ \t]+", ""):gsub("[ \t\r]+$", ""))
end

-- One answer's status line and headers (the last one, after any 1xx).
-- Returns the head table or nil, socket error, bytes seen.
local function read_head(sock)
  local seen, head = 0, nil
  for _ = 1, 200 do -- header lines (and skipped 1xx answers), bounded
    local line, err = sock:receive("*l")
    if not line then return nil, err, seen end
    seen = seen + #line + 2
    if seen > MAX_HEADER_BYTES then return nil, "headers too large", seen end
    if not head then
      local version, code = line:match("^HTTP/(%d%.%d) (%d%d%d)")
      if not code then return nil, "malformed status line", seen end
      head = { version = version, status = tonumber(code), ra = -1, ra_ms = -1 }
    elseif line == "" or line == "\r" then
      if head.status >= 200 or head.status == 101 then return head end
      head = nil -- 100 Continue and friends: the real answer follows
    else
      local name, value = line:match("^([^:]+):(.*)$")
      if name then
        name, value = name:lower(), trim(value)
        if name == "x-vercel-id" then head.request_id = printable(value)
        elseif name == "content-type" then head.content_type = printable(value)
        elseif name == "retry-after" then head.ra = parse_retry_after(value)
        elseif name == "retry-after-ms" then head.ra_ms = parse_retry_after(value) / 1000
        elseif name == "content-length" then head.length = tonumber(value:match("^%d+$"))
        elseif name == "transfer-encoding" then head.chunked = value:lower():find("chunked", 1, true) ~= nil
        elseif name == "connection" then head.close = value:lower():find("close", 1, true) ~= nil
        end
      end
    end
  end
  return nil, "too many header lines", seen
end

-- Body readers: the body or nil, error, bytes short (nil when unknown).
local function read_length(sock, n, max)
  if n > max then return nil, "too large" end
  if n == 0 then return "" end
  local data, err, partial = sock:receive(n)
  if data then return data end
  return nil, err, n - #(partial or "")
end

local function read_chunked(sock, max)
  local parts, total = {}, 0
  for _ = 1, 1e6 do -- chunks, bounded
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "malformed chunk" end
    if size == 0 then
      for _ = 1, 100 do -- trailers up to the empty line
        local t, terr = sock:receive("*l")
        if not t then return nil, terr end
        if t == "" then return table.concat(parts) end
      end
      return nil, "too many trailers"
    end
    total = total + size
    if total > max then return nil, "too large" end
    local data, derr, partial = sock:receive(size + 2) -- the chunk and its CRLF
    if not data then return nil, derr, size + 2 - #(partial or "") end
    parts[#parts + 1] = data:sub(1, size)
  end
  return nil, "too many chunks"
end

local function read_to_close(sock, max)
  local parts, total = {}, 0
  for _ = 1, max / READ_CHUNK + 2 do
    local data, err, partial = sock:receive(READ_CHUNK)
    data = data or partial
    total = total + #data
    if total > max then return nil, "too large" end
    parts[#parts + 1] = data
    if err == "closed" then return table.concat(parts), nil, nil, true end
    if err then return nil, err end
  end
  return nil, "too large"
end

local function read_body(sock, head, method, max)
  local s = head.status
  if method == "HEAD" or s == 204 or s == 304 or (s >= 100 and s < 200) then return "" end
  if head.chunked then return read_chunked(sock, max) end
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

-- Connect (or take a pooled connection) and shake hands.  Returns the
-- socket, or nil and the failure's kind, message and retryability.
local function connect(s, scheme, host, port, deadline)
  local sock = ngx.socket.tcp()
  local connect_ms = math.min(math.floor(s.connect_timeout * 1000 + 0.5), left_ms(deadline))
  sock:settimeouts(connect_ms, left_ms(deadline), left_ms(deadline))
  local ok, err = sock:connect(host, port, { pool = "vercel.marketplace:" .. scheme .. "://" .. host .. ":" .. port })
  if not ok then
    if err == "timeout" then
      return nil, "timeout", ("connection to %s port %d timed out after %d ms"):format(host, port, connect_ms)
    end
    return nil, "transport", ("failed to connect to %s port %d: %s"):format(host, port, err), true
  end
  if scheme == "https" and sock:getreusedtimes() == 0 then
    sock:settimeouts(left_ms(deadline), left_ms(deadline), left_ms(deadline))
    ok, err = handshake(sock, host)
    if not ok then
      sock:close()
      if err == "timeout" then return nil, "timeout", ("TLS handshake with %s timed out"):format(host) end
      return nil, "transport", ("TLS handshake with %s failed: %s"):format(host, err), false
    end
  end
  return sock
end

-- What went wrong while the answer was being read, as kind, message, retryable.
local function read_failure(s, err, short, timeout_ms)
  if err == "timeout" then return "timeout", ("operation timed out after %d ms"):format(timeout_ms) end
  if err == "too large" then
    return "transport", ("response larger than %d bytes (max_response_size)"):format(s.max_response), false
  end
  if short then return "transport", ("transfer closed with %d bytes remaining to read"):format(short), true end
  if err == "closed" then return "transport", "connection closed before a whole answer came", true end
  if err == "connection reset by peer" then return "transport", "connection reset by peer", true end
  return "transport", "malformed answer: " .. tostring(err), false
end

-- One exchange on a connected socket.  Returns status, body, meta, or nil,
-- kind, message, retryable, and whether nothing at all was answered.
local function exchange(s, sock, method, authority, path, body, deadline, timeout_ms)
  local ok, err = sock:send(request_bytes(s, method, authority, path, body))
  if not ok then
    sock:close()
    local kind, message, retryable = read_failure(s, err, nil, timeout_ms)
    return nil, kind, message, retryable, true
  end
  sock:settimeouts(left_ms(deadline), left_ms(deadline), left_ms(deadline))
  local head, seen
  head, err, seen = read_head(sock)
  if not head then
    sock:close()
    local kind, message, retryable = read_failure(s, err, nil, timeout_ms)
    return nil, kind, message, retryable, seen == 0
  end
  local data, short, to_close
  sock:settimeouts(left_ms(deadline), left_ms(deadline), left_ms(deadline))
  data, err, short, to_close = read_body(sock, head, method, s.max_response)
  if not data then
    sock:close()
    return nil, read_failure(s, err, short, timeout_ms)
  end
  local reused = sock:getreusedtimes() > 0
  if to_close or head.close or head.version == "1.0" then sock:close() else sock:setkeepalive() end
  local ra = head.ra_ms >= 0 and head.ra_ms or head.ra
  return head.status, data, {
    request_id = head.request_id, content_type = head.content_type,
    retry_after = ra >= 0 and ra or nil, reused = reused,
  }
end

-- As the C session does: an error answer may echo the request (a gateway's
-- page, a message quoting a header), so the token is cut out of it before
-- an error message or log line can be made from it.
local function without_token(self, status, body)
  if not status or (status >= 200 and status < 300) then return body end
  local token = header_block[self]:match("\nAuthorization: Bearer ([^\r]*)\r\n")
  if #token < response.MIN_TOKEN_CUT then return body end
  return response.cut(body, token, "[token]")
end

--- session:perform(method, url[, body]) -> status, body, meta | nil, kind,
-- message, retryable.  Misuse (a closed session, a bad method or URL) raises.
function Session:perform(method, url, body)
  if self.closed then error("attempt to use a closed session", 2) end
  if not METHODS[method] then error("bad argument #1 to 'perform' (invalid option '" .. tostring(method) .. "')", 2) end
  if type(url) ~= "string" or url:find("[%z\r\n\t ]") then
    error("bad argument #2 to 'perform' (URL must not contain spaces, CR, LF or NUL)", 2)
  end
  if body ~= nil and type(body) ~= "string" then error("bad argument #3 to 'perform' (string expected)", 2) end
  local scheme, host, port, authority, path = split_url(url)
  if not scheme then
    return failure("transport", "unsupported protocol or malformed URL (only http:// and https://)", false)
  end
  ngx.update_time()
  local timeout_ms = math.floor(self.timeout * 1000 + 0.5)
  local deadline = ngx.now() + self.timeout
  -- A kept-alive connection the server has closed meanwhile fails before a
  -- byte of answer: then try once more on a fresh one, as libcurl does.
  for _ = 1, 2 do
    local sock, kind, message, retryable = connect(self, scheme, host, port, deadline)
    if not sock then return failure(kind, message, retryable) end
    local was_reused = sock:getreusedtimes() > 0
    local status, rbody, meta, rretryable, silent = exchange(self, sock, method, authority, path, body,
      deadline, timeout_ms)
    if status or not (was_reused and silent and rbody == "transport") then
      return status, without_token(self, status, rbody), meta, rretryable
    end
  end
  return failure("transport", "connection closed before a whole answer came", true)
end

return M
