-- The Marketplace resource endpoints, answered as Vercel answers them.
-- Bodies are checked by our C core, the same code the client uses, and
-- its findings are worded the way Vercel (ajv) words them.
local core = require "vercel.marketplace.core"
local json = require "vercel.marketplace.emulator.json"
local reply = require "vercel.marketplace.emulator.reply"
local store = require "vercel.marketplace.emulator.store"

local M = {}

-- What the TypeScript SDK's response schema knows; the rest is not answered.
local VIEW = { "internalId", "name", "status", "productId", "protocolSettings",
               "notification", "metadata" }

-- An array whose items are all of Lua type `t`.
local function array_of(v, t)
  if v == json.empty_array then return true end
  if type(v) ~= "table" or v[1] == nil then return false end
  local n = 0
  for k, x in pairs(v) do
    if type(k) ~= "number" or type(x) ~= t then return false end
    n = n + 1
  end
  return n == #v
end

-- The SDK's response schema takes metadata values that are a string, a
-- number, a boolean, or an array of strings or of numbers; an import may
-- store anything, so the rest is left out of answers.
local function answerable_metadata(m)
  if type(m) ~= "table" then return m end
  local out = {}
  for k, v in pairs(m) do
    local t = type(v)
    if t == "string" or t == "number" or t == "boolean" or array_of(v, "string") or array_of(v, "number") then
      out[k] = v
    end
  end
  return out
end

local function view(r, id_field)
  local out = { [id_field] = r.id }
  for _, f in ipairs(VIEW) do out[f] = r[f] end
  out.metadata = answerable_metadata(r.metadata)
  if type(r.billingPlan) == "table" then out.billingPlanId = r.billingPlan.id end
  return out
end

local function not_found()
  return reply.error(404, "not_found", "Resource not found")
end

local function bad_request(message)
  return reply.error(400, "bad_request", message)
end

local function is_object(v)
  return type(v) == "table" and v ~= json.empty_array and v[1] == nil
end

-- The decoded, validated body, or nil after a 400 has been answered.
local function body_of(kind, raw)
  if raw == nil or raw == "" then return bad_request("Invalid request: missing request body.") end
  local v, err = json.decode(raw)
  if v == nil then return bad_request("Invalid JSON: " .. tostring(err) .. ".") end
  if not is_object(v) then return bad_request("Invalid request: body should be object.") end
  local ok, valid, errors = pcall(core.validate, kind, v)
  if not ok then
    ngx.log(ngx.ERR, "core.validate raised: ", valid)
    return reply.error(500, "internal_server_error", "The emulator's validator failed")
  end
  if not valid then
    return bad_request(reply.validation_message(errors and errors[1] or {}))
  end
  return v
end

local function get_one(icfg, rid)
  local r = store.get(icfg, rid)
  if not r then return not_found() end
  return reply.json(200, view(r, "id"))
end

local function list(icfg)
  local out = {}
  for i, r in ipairs(store.list(icfg)) do out[i] = view(r, "partnerId") end
  return reply.json(200, { resources = json.array(out) })
end

local function import(icfg, rid, raw)
  local body = body_of("import", raw)
  if not body then return end
  local r = store.import(icfg, rid, body)
  return reply.json(200, { name = r.name })
end

local function update(icfg, rid, raw)
  -- Vercel looks the resource up before it reads the body.
  if not store.get(icfg, rid) then return not_found() end
  local body = body_of("update", raw)
  if not body then return end
  local r = store.update(icfg, rid, body)
  return reply.json(200, { name = r.name })
end

local function delete(icfg, rid)
  if not store.delete(icfg, rid) then return not_found() end
  return reply.empty(204)
end

local function put_secrets(icfg, rid, raw)
  if not store.get(icfg, rid) then return not_found() end
  local body = body_of("secrets", raw)
  if not body then return end
  store.set_secrets(icfg, rid, body.secrets or json.empty_array, body.partial == true)
  return reply.empty(201)
end

-- Route table: shape of the path -> method -> handler.
local ROUTES = {
  list = { GET = list },
  one = { GET = get_one, PUT = import, PATCH = update, DELETE = delete },
  secrets = { PUT = put_secrets },
}
local ALLOW = { list = "GET", one = "GET, PUT, PATCH, DELETE", secrets = "PUT" }

-- Which route a list of unescaped segments names, and its ids.
function M.route(segs)
  local i = segs[1] == "api" and 2 or 1   -- base URLs may carry /api
  if segs[i] ~= "v1" or segs[i + 1] ~= "installations" or segs[i + 3] ~= "resources" then
    return nil
  end
  local icfg, rid, tail, n = segs[i + 2], segs[i + 4], segs[i + 5], #segs - i + 1
  if icfg == "" then return nil end
  if n == 4 then return "list", icfg end
  if rid == "" then return nil end
  if n == 5 then return "one", icfg, rid end
  if n == 6 and tail == "secrets" then return "secrets", icfg, rid end
  return nil
end

-- bearer(header_value) -> the token of a single "Bearer <token>" header,
-- or nil (another scheme, or the header repeated: nginx gives a table).
function M.bearer(value)
  if type(value) ~= "string" then return nil end
  local scheme, given = value:match("^(%S+)%s+(.-)%s*$")
  if scheme and scheme:lower() == "bearer" then return given end
  return nil
end

local function authorized(value, token)
  local given = M.bearer(value)
  return given ~= nil and given == token
end

-- handle(req, token): route, check the token, answer. req has method,
-- segs (unescaped path segments), body (raw) and authorization.
-- Unknown routes are 404 and wrong methods 405 even without a token.
function M.handle(req, token)
  local name, icfg, rid = M.route(req.segs)
  if not name then return reply.error(404, "not_found", "The requested endpoint was not found") end
  local handler = ROUTES[name][req.method]
  if not handler then
    return reply.error(405, "method_not_allowed", "Method not allowed", nil, { Allow = ALLOW[name] })
  end
  if not authorized(req.authorization, token) then
    local why = req.authorization and { invalidToken = true } or { missingToken = true }
    return reply.error(401, "forbidden", "Not authorized", why)
  end
  return handler(icfg, rid, req.body)
end

return M
