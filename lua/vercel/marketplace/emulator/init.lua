-- vercel.marketplace.emulator: a local stand-in for Vercel's Marketplace
-- resource API, run inside nginx by bin/vercel-marketplace-emulator.
-- init() runs in init_by_lua, init_worker() in init_worker_by_lua and
-- handle() answers every request (content_by_lua).
local api = require "vercel.marketplace.emulator.api"
local control = require "vercel.marketplace.emulator.control"
local faults = require "vercel.marketplace.emulator.faults"
local journal = require "vercel.marketplace.emulator.journal"
local reply = require "vercel.marketplace.emulator.reply"
local store = require "vercel.marketplace.emulator.store"

local M = { _VERSION = "0.1.0" }

local DEFAULT_TOKEN = "emulator-token"
local token = DEFAULT_TOKEN

-- Settings come from the environment (the nginx `env` directive passes
-- them), so the token never appears in the generated nginx.conf.
function M.init()
  token = os.getenv("VERCEL_MARKETPLACE_EMULATOR_TOKEN") or DEFAULT_TOKEN
  local state = os.getenv("VERCEL_MARKETPLACE_EMULATOR_STATE")
  store.load(state ~= "" and state or nil)
end

-- Our parent's pid, from /proc (Linux); nil where there is none.  The
-- command name in the middle may hold spaces or parentheses: the state and
-- ppid fields follow its last ")".
local function parent_pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local stat = f:read("*a")
  f:close()
  return tonumber(stat:match(".*%) %S+ (%d+)"))
end

local ORPHAN_CHECK = 0.5 -- seconds

-- The launcher stops nginx on TERM or INT, but nothing runs when it is
-- killed with KILL: nginx would keep its port and its prefix forever.  So
-- nginx watches for a new parent (the launcher gone, nginx handed to init),
-- then removes its prefix and stops itself the way the launcher would.
local function watch_launcher()
  local launcher = tonumber(os.getenv("VERCEL_MARKETPLACE_EMULATOR_LAUNCHER") or "")
  if not launcher or parent_pid() ~= launcher then return end
  ngx.timer.every(ORPHAN_CHECK, function(premature)
    if premature or parent_pid() == launcher then return end
    local prefix = ngx.config.prefix():gsub("/+$", "")
    ngx.log(ngx.WARN, "the emulator's launcher is gone: removing ", prefix, " and stopping")
    os.execute("rm -rf '" .. prefix:gsub("'", "'\\''") .. "'")
    os.execute("kill -TERM " .. ngx.worker.pid())
  end)
end

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  watch_launcher()
end

-- Percent-decoding only: ngx.unescape_uri would also turn "+" into a space,
-- which is form encoding, not a path's.
local function hex_char(h) return string.char(tonumber(h, 16)) end
local function unescape(s) return (s:gsub("%%(%x%x)", hex_char)) end

-- The raw path split on "/" and each segment unescaped, so "a%2Fb" is one
-- id "a/b" (nginx's $uri would already have turned it into two).
local function segments(path)
  local segs = {}
  for s in (path:sub(2) .. "/"):gmatch("([^/]*)/") do
    segs[#segs + 1] = unescape(s)
  end
  return segs
end

-- The body as sent; nginx keeps large ones in a file.
local function read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local name = ngx.req.get_body_file()
  if not name then return nil end
  local f = io.open(name, "rb")
  if not f then return nil end
  data = f:read("*a")
  f:close()
  return data
end

-- What the log keeps of an Authorization header: whether it carried our
-- token, never the value. The log is served to anyone who asks, and a real
-- token sent here by mistake (even one refused with 401) must not be.
local function redacted_authorization(value)
  if type(value) == "table" then                -- the header repeated
    local out = {}
    for i, v in ipairs(value) do out[i] = redacted_authorization(v) end
    return out
  end
  local given = api.bearer(value)
  if not given then return "[redacted]" end
  return given == token and "Bearer [token]" or "Bearer [other token]"
end

local function log_entry(req, path)
  local query = ngx.var.args or ""
  local headers = ngx.req.get_headers(200)
  if headers.authorization then
    headers.authorization = redacted_authorization(headers.authorization)
  end
  journal.record({
    method = req.method, path = path, query = query,
    headers = headers, body = req.body or "",
    protocol = ngx.var.server_protocol, -- "HTTP/1.1", "HTTP/2.0"
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
  })
end

-- A client that hangs up ends a "hang" fault (lua_check_client_abort).
local function on_abort() return ngx.exit(499) end

function M.handle()
  local path = ngx.var.request_uri:match("^[^?]*")
  local req = { method = ngx.req.get_method(), segs = segments(path) }
  req.body = read_body()
  if req.segs[1] == "_emulator" then return control.handle(req) end
  ngx.on_abort(on_abort)
  log_entry(req, path)
  local fault = faults.take(req.method, path)
  if fault then faults.apply(fault) end
  faults.rate_check()
  req.authorization = ngx.var.http_authorization
  return api.handle(req, token)
end

-- For error_page: answers nginx produced itself (413, 500), as JSON too.
function M.handle_nginx_error(status)
  return reply.error(status)
end

return M
