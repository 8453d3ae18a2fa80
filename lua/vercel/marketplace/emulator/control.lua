-- The control interface under /_emulator/: no token, JSON in and out, only
-- for requests that name this machine in Host (see loopback_host), and for
-- changes only from this machine's pages, as JSON (refuse_cross_site). Tests
-- arm faults and the rate limit here, read the request log, and look at
-- stored records with their secrets.
local faults = require "vercel.marketplace.emulator.faults"
local journal = require "vercel.marketplace.emulator.journal"
local json = require "vercel.marketplace.emulator.json"
local reply = require "vercel.marketplace.emulator.reply"
local store = require "vercel.marketplace.emulator.store"

local M = {}

local function bad(message)
  return reply.error(400, "bad_request", message)
end

-- The JSON object in a control body; an empty body is an empty object.
local function object(raw)
  if raw == nil or raw == "" then return {} end
  local v, err = json.decode(raw)
  if type(v) ~= "table" or v == json.empty_array or v[1] ~= nil then
    return nil, "body should be a JSON object" .. (err and (": " .. err) or "")
  end
  return v
end

local function ping()
  return reply.json(200, { ok = true, nonce = os.getenv("VERCEL_MARKETPLACE_EMULATOR_NONCE") })
end

local function add_fault(raw)
  local spec, err = object(raw)
  if not spec then return bad(err) end
  local id, why = faults.add(spec)
  if not id then return bad(why) end
  return reply.json(201, { id = id })
end

local function list_faults()
  return reply.json(200, { faults = json.array(faults.list()) })
end

local function clear_faults()
  faults.clear()
  return reply.json(200, { ok = true })
end

local function set_rate_limit(raw)
  local spec, err = object(raw)
  if not spec then return bad(err) end
  local ok, why = faults.set_rate_limit(spec)
  if not ok then return bad(why) end
  return reply.json(201, { ok = true })
end

local function clear_rate_limit()
  faults.clear_rate_limit()
  return reply.json(200, { ok = true })
end

local function requests()
  return reply.json(200, { requests = json.array(journal.list()) })
end

local function clear_requests()
  journal.clear()
  return reply.json(200, { ok = true })
end

local function resource(_, icfg, rid)
  local r = icfg and rid and store.get(icfg, rid)
  if not r then return reply.error(404, "not_found", "Resource not found") end
  return reply.json(200, r)
end

local function reset()
  store.reset()
  faults.reset()
  journal.clear()
  return reply.json(200, { ok = true })
end

local ROUTES = {
  ping = { GET = ping },
  faults = { POST = add_fault, GET = list_faults, DELETE = clear_faults },
  ["rate-limit"] = { POST = set_rate_limit, DELETE = clear_rate_limit },
  requests = { GET = requests, DELETE = clear_requests },
  resources = { GET = resource },
  reset = { POST = reset },
}

-- The names a browser uses for this machine. A web page on any other name
-- that resolves to 127.0.0.1 (DNS rebinding) sends that name as Host, and
-- must not read the log or the records (secrets), nor arm faults. $host is
-- checked too: it takes the request line's host over the header's.
local LOOPBACK = { ["127.0.0.1"] = true, localhost = true, ["[::1]"] = true }

-- "localhost:8787" -> "localhost", "[::1]:8787" -> "[::1]"; no port: as is.
local function without_port(hostport)
  return hostport:match("^(.-):%d+$") or hostport
end

local function loopback_host()
  local given = (ngx.var.http_host or ngx.var.host or ""):lower()
  return LOOPBACK[without_port(given)] == true and LOOPBACK[ngx.var.host] == true
end

-- A page on another site can POST here without a CORS preflight (a "simple"
-- request: text/plain, a form) and need not read the answer to reset the
-- state or arm a fault; the browser names that site in Origin. So a request
-- that changes anything (every method but GET) must come from no page or
-- one on this machine, and carry Content-Type: application/json, which no
-- page can send cross-site without a preflight, and we answer no preflight.
-- A repeated header arrives as a table: refused, whatever its values.
local function foreign_origin(origin)
  if origin == nil then return false end
  if type(origin) ~= "string" then return true end
  local host = origin:lower():match("^https?://([^/]+)$")
  return not (host and LOOPBACK[without_port(host)])
end

local function json_content_type(value)
  if type(value) ~= "string" then return false end
  return value:lower():match("^%s*([^;%s]+)") == "application/json"
end

-- nil when the request may go on; else the refusal, already sent.
local function refuse_cross_site(method)
  if method == "GET" then return nil end
  local headers = ngx.req.get_headers(200)
  if foreign_origin(headers.origin) then
    return reply.error(403, "forbidden", "Control requests other than GET are refused from a"
                       .. " foreign Origin (only http(s)://127.0.0.1, localhost or [::1])")
  end
  if not json_content_type(headers["content-type"]) then
    return reply.error(415, "unsupported_media_type",
                       "Control requests other than GET need Content-Type: application/json")
  end
end

-- handle(req): segs[1] is "_emulator"; segs[2] names the endpoint.
function M.handle(req)
  if not loopback_host() then
    return reply.error(403, "forbidden",
                       "Control requests need Host 127.0.0.1, localhost or [::1] (with any port)")
  end
  if refuse_cross_site(req.method) then return end
  local segs = req.segs
  local routes = ROUTES[segs[2] or ""]
  local extra = segs[2] == "resources" and 4 or 2   -- resources/{icfg}/{rid}
  if not routes or #segs ~= extra then
    return reply.error(404, "not_found", "No such control endpoint")
  end
  local handler = routes[req.method]
  if not handler then return reply.error(405, "method_not_allowed", "Method not allowed") end
  return handler(req.body, segs[3], segs[4])
end

return M
