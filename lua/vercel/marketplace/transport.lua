--- Which transport carries the requests of an installation.
--
-- `open(settings)` returns a session, whose `perform(method, url, body,
-- limit)` answers `status, body, meta` or `nil, kind, message, retryable,
-- sent` (see csrc/session.c, csrc/easy.c) and whose `redact(text, secrets)` cuts its
-- token out of text, and the `sleep(seconds)` the retry loop waits with.
--
-- Outside nginx every request goes through the libcurl session.  Inside
-- nginx the choice is made per request, from `ngx.get_phase()`: where a
-- request may yield (rewrite, access, content, timer) it goes over a
-- cosocket (vercel.marketplace.cosocket) and retries wait with `ngx.sleep`;
-- elsewhere (init, init_worker, set, header_filter, body_filter, log,
-- balancer...) cosockets are unavailable, so the libcurl session is used and
-- blocks the worker for the length of the call.  An installation made in
-- `init_by_lua` and used in `content_by_lua` therefore uses both.
-- @module vercel.marketplace.transport
local core = require "vercel.marketplace.core"

local M = {}

local ngx = ngx -- luacheck: ignore (nil outside nginx)

-- Inside nginx, the requests of a yieldable phase do not use ca_file or
-- ca_path: cosockets trust nginx's lua_ssl_trusted_certificate only.  We
-- refuse them rather than verify against something else than was asked.
local function check_nginx_settings(settings)
  for _, k in ipairs({ "ca_file", "ca_path" }) do
    if settings[k] ~= nil then
      error(("option '%s' does not apply inside nginx: set lua_ssl_trusted_certificate instead"):format(k), 4)
    end
  end
end

local Switch = { __name = "vercel.marketplace.transport" }
Switch.__index = Switch

function Switch:perform(method, url, body, limit)
  if self.cosocket.yieldable() then return self.nonblocking:perform(method, url, body, limit) end
  return self.blocking:perform(method, url, body, limit)
end

-- Both sessions hold the same token: the C one cuts it.
function Switch:redact(text, secrets)
  return self.blocking:redact(text, secrets)
end

function Switch:close()
  self.blocking:close()
  self.nonblocking:close()
end

function Switch:__tostring()
  return tostring(self.blocking)
end

--- How a batch runs over `session` now: `"multi", s` (a libcurl multi
-- handle with the settings of the libcurl session `s`), or, inside nginx
-- where a request may yield, `"threads"` (light threads over cosockets).
function M.batch_mode(session)
  if getmetatable(session) ~= Switch then return "multi", session end
  if session.cosocket.yieldable() then return "threads" end
  return "multi", session.blocking
end

--- The User-Agent sent when the `user_agent` option is not given: it names
-- what carries the request, `"libcurl"` or `"cosocket"` (nginx's).
function M.user_agent(via)
  local carrier
  if via == "cosocket" then
    local v = ngx.config.ngx_lua_version -- 10021 for 0.10.21
    carrier = ("lua-nginx-module/%d.%d.%d"):format(math.floor(v / 1e6), math.floor(v / 1e3) % 1000, v % 1000)
  else
    carrier = "libcurl/" .. core.CURL_VERSION
  end
  return ("vercel-marketplace-lua/%s (%s; %s)"):format(core.VERSION, carrier, _VERSION)
end

-- `settings` with the default User-Agent of `via` when none is given.
local function with_user_agent(settings, via)
  if settings.user_agent then return settings end
  local s = {}
  for k, v in pairs(settings) do s[k] = v end
  s.user_agent = M.user_agent(via)
  return s
end

--- Open a session for `settings` (token, timeout, connect_timeout,
-- max_response_size, ca_file, ca_path, user_agent).  Misuse raises.
function M.open(settings)
  -- The C session checks every setting (a header value with CR, LF or NUL
  -- raises) for both transports, and serves the phases that cannot yield.
  if not (ngx and ngx.get_phase) then return core.session(with_user_agent(settings, "libcurl")), core.sleep end
  check_nginx_settings(settings)
  local blocking = core.session(with_user_agent(settings, "libcurl"))
  local cosocket = require "vercel.marketplace.cosocket"
  local nonblocking = cosocket.session(with_user_agent(settings, "cosocket"))
  local s = setmetatable({ blocking = blocking, nonblocking = nonblocking, cosocket = cosocket }, Switch)
  local function sleep(seconds)
    if cosocket.yieldable() then return ngx.sleep(seconds) end
    return core.sleep(seconds)
  end
  return s, sleep
end

return M
