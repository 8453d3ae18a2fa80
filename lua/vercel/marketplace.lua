--- Lua client for the Vercel Marketplace resource API.
--
--    local marketplace = require "vercel.marketplace"
--    local inst = marketplace.installation("icfg_123", { token = os.getenv("VERCEL_TOKEN") })
--    local out, err = inst:import("db_1", {
--      productId = "postgres", name = "main-db", status = marketplace.status.ready,
--    })
--    if not out then error(tostring(err)) end
--
-- Request bodies are validated and encoded by the C core
-- (`vercel.marketplace.core`) before anything is sent; responses are decoded
-- with lua-cjson.  Every failure a caller must handle returns `nil, err`
-- (see `vercel.marketplace.error`); misuse (a wrong argument type, a missing
-- token, an unknown option) raises a Lua error.
-- @module vercel.marketplace
local core = require "vercel.marketplace.core"
local cjson = require "cjson"
local errors = require "vercel.marketplace.error"
local retry = require "vercel.marketplace.retry"
local resource = require "vercel.marketplace.resource"

local M = { VERSION = core.VERSION }

--- Options of `installation` and their defaults.
-- @table defaults
-- @field base_url API root; may carry a path prefix (`https://vercel.com/api`)
-- @field timeout seconds for one attempt, connection included
-- @field connect_timeout seconds to establish a connection
-- @field retries retries after the first attempt, for retryable failures
-- @field retry_base first backoff delay in seconds, doubled per retry
-- @field max_retry_delay longest wait before a retry, in seconds; a longer
--  `Retry-After` is not waited for: the error is returned with `retry_after`
-- @field max_response_size bytes; a larger answer is a `transport` error
-- @field ca_file CA bundle (PEM) to verify servers with, instead of the system's
-- @field ca_path CA directory, instead of the system's
-- @field user_agent replaces the default `vercel-marketplace-lua/VERSION ...`
M.defaults = {
  base_url = "https://api.vercel.com",
  timeout = 30,
  connect_timeout = 10,
  retries = 2,
  retry_base = 0.5,
  max_retry_delay = 60,
  max_response_size = 8 * 1024 * 1024,
  ca_file = false,
  ca_path = false,
  user_agent = false,
}

M.error = errors

-- Enum constant tables (`marketplace.status.ready`), derived from the schema
-- in C.  Reading an unknown name raises, so a typo cannot slip through as nil.
local function constants(name, values)
  local t = {}
  for _, v in ipairs(values) do t[v] = v end
  return setmetatable(t, {
    __index = function(_, k) error(("unknown %s '%s'"):format(name, tostring(k)), 2) end,
    __newindex = function() error(name .. " constants are read-only", 2) end,
  })
end

--- Resource statuses: `ready pending onboarding suspended resumed uninstalled error`.
M.status = constants("status", core.enums.status)
--- Ownership values: `owned linked sandbox`.
M.ownership = constants("ownership", core.enums.ownership)
--- Billing plan types: `prepayment subscription`.
M.billing_plan_type = constants("billing plan type", core.enums.billing_plan_type)
--- Notification levels: `info warn error`.
M.notification_level = constants("notification level", core.enums.notification_level)

local BODY_KINDS = { import = true, update = true, secrets = true }

-- Misuse raises, pointing at the caller of the public function.
local function check_arg(fname, argn, v, expected)
  if type(v) ~= expected then
    error(("bad argument #%d to '%s' (%s expected, got %s)"):format(argn, fname, expected, type(v)), 3)
  end
end

--- Validate a request body offline, exactly as `import`/`update` would.
-- @tparam string kind `"import"`, `"update"` or `"secrets"`
-- @tparam table body
-- @return true, or nil and a `validation` error listing every problem
function M.validate(kind, body)
  if not BODY_KINDS[kind] then
    error("bad argument #1 to 'validate' (expected \"import\", \"update\" or \"secrets\")", 2)
  end
  check_arg("validate", 2, body, "table")
  local ok, problems = core.validate(kind, body)
  if ok then return true end
  return nil, errors.validation(kind, problems)
end

-- Responses ---------------------------------------------------------------

local REASONS = {
  [301] = "Moved Permanently (redirects are not followed)", [302] = "Found (redirects are not followed)",
  [307] = "Temporary Redirect (redirects are not followed)", [308] = "Permanent Redirect (redirects are not followed)",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [409] = "Conflict", [410] = "Gone", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

-- Decode a JSON object; Debian's cjson 2.1.0 gives floats, so integers are
-- restored (on Lua 5.3+) by the core.
local function decode_object(body)
  local ok, v = pcall(cjson.decode, body)
  if not ok then return nil, (tostring(v):gsub("^.-: ", "")) end
  if type(v) ~= "table" then return nil, "not a JSON object" end
  return core.integerize(v)
end

local function http_error(status, body, meta)
  local e = { status = status, request_id = meta.request_id, retry_after = meta.retry_after }
  local v = decode_object(body)
  local api = v and v.error
  if type(api) == "table" then
    e.code = type(api.code) == "string" and api.code or nil
    e.api_message = type(api.message) == "string" and api.message or nil
    e.limit = type(api.limit) == "table" and api.limit or nil
  end
  local reason = REASONS[status]
  local msg = "the API answered " .. status .. (reason and (" " .. reason) or "")
  return errors.new("http", msg, e)
end

-- Installation ------------------------------------------------------------

local Installation = { __name = "vercel.marketplace.installation" }
Installation.__index = Installation

function Installation:__tostring()
  return ("vercel.marketplace.installation(%s, %s)"):format(self.id, self.base_url)
end

-- One request with retries.  Returns status, body, meta or nil, err.
function Installation:_send(method, path, json)
  local opts, url = self._opts, self.base_url .. path
  local attempt = 0
  while true do
    attempt = attempt + 1
    local status, body, meta, retryable = self._session:perform(method, url, json)
    if status and status >= 200 and status < 300 then return status, body, meta end
    local err = status and http_error(status, body, meta) or errors.new(body, meta)
    err.method, err.path, err.attempts = method, path, attempt
    if attempt > opts.retries or not retry.retryable(err, retryable) then return nil, err end
    local wait = retry.delay(attempt, err, opts)
    if not wait then return nil, err end
    self._sleep(wait)
  end
end

-- Send and decode a JSON object answer.
function Installation:_call(method, path, json)
  local status, body, meta = self:_send(method, path, json)
  if not status then return nil, body end
  local v, why = decode_object(body)
  if not v then
    return nil, errors.new("decode", ("expected a JSON object, got %s"):format(why), {
      status = status, request_id = meta.request_id, method = method, path = path,
    })
  end
  return v
end

function Installation:_path(id, suffix)
  local esc, problem = core.escape_id(id)
  if not esc then
    return nil, errors.new("validation", "invalid resource id; nothing was sent",
      { errors = { { path = "id", message = problem } } })
  end
  return self._prefix .. "/resources/" .. esc .. (suffix or "")
end

-- Encode a body, or the validation error.
local function encode(kind, body)
  local json, problems = core.encode(kind, body)
  if not json then return nil, errors.validation(kind, problems) end
  return json
end

-- The shape shared by import and update: validate, encode, send, decode.
local function upsert(self, method, kind, id, body)
  local path, err = self:_path(id)
  if not path then return nil, err end
  local json, verr = encode(kind, body)
  if not json then return nil, verr end
  return self:_call(method, path, json)
end

--- Import (upsert) a resource: `PUT /v1/installations/{id}/resources/{rid}`.
-- @tparam string id the partner's resource id
-- @tparam table body an Import body (`productId`, `name`, `status`, ...)
-- @return the decoded answer (`{name = ...}`), or nil, err
function Installation:import(id, body)
  check_arg("import", 1, id, "string")
  check_arg("import", 2, body, "table")
  return upsert(self, "PUT", "import", id, body)
end

--- Update a resource partially: `PATCH .../resources/{rid}`.
-- Fields left out stay as they are.
-- @tparam string id
-- @tparam table patch an Update body
-- @return the decoded answer (`{name = ...}`), or nil, err
function Installation:update(id, patch)
  check_arg("update", 1, id, "string")
  check_arg("update", 2, patch, "table")
  return upsert(self, "PATCH", "update", id, patch)
end

--- Read one resource: `GET .../resources/{rid}`.
-- @return a resource object (fields as the API returned them, methods
--  `update`, `delete`, `refresh`), or nil, err
function Installation:get(id)
  check_arg("get", 1, id, "string")
  local path, err = self:_path(id)
  if not path then return nil, err end
  local v, e = self:_call("GET", path)
  if not v then return nil, e end
  return resource.wrap(self, v)
end

--- List the installation's resources: `GET .../resources`.
-- @return an array of resource objects, or nil, err
function Installation:list()
  local path = self._prefix .. "/resources"
  local v, e = self:_call("GET", path)
  if not v then return nil, e end
  if type(v.resources) ~= "table" then
    return nil, errors.new("decode", "expected a \"resources\" array", { method = "GET", path = path })
  end
  for i, r in ipairs(v.resources) do
    if type(r) == "table" then resource.wrap(self, r) else v.resources[i] = r end
  end
  return v.resources
end

--- Delete a resource: `DELETE .../resources/{rid}`.
-- @return true, or nil, err
function Installation:delete(id)
  check_arg("delete", 1, id, "string")
  local path, err = self:_path(id)
  if not path then return nil, err end
  local status, e = self:_send("DELETE", path)
  if not status then return nil, e end
  return true
end

--- Replace (or, with `{partial = true}`, merge) a resource's secrets:
-- `PUT .../resources/{rid}/secrets`.
-- @tparam string id
-- @tparam table secrets array of `{name, value, prefix?, environmentOverrides?}`
-- @tparam[opt] table opts `partial` (boolean, default false): overwrite only
--  the secrets named, keep the others
-- @return true, or nil, err
function Installation:update_secrets(id, secrets, opts)
  check_arg("update_secrets", 1, id, "string")
  check_arg("update_secrets", 2, secrets, "table")
  opts = opts or {}
  check_arg("update_secrets", 3, opts, "table")
  for k in pairs(opts) do
    if k ~= "partial" then error(("unknown option '%s' to 'update_secrets'"):format(tostring(k)), 2) end
  end
  local path, err = self:_path(id, "/secrets")
  if not path then return nil, err end
  local json, verr = encode("secrets", { secrets = secrets, partial = opts.partial })
  if not json then return nil, verr end
  local status, e = self:_send("PUT", path, json)
  if not status then return nil, e end
  return true
end

--- Close the connection now (it is also closed when collected).
function Installation:close()
  self._session:close()
end
Installation.__close = Installation.close

-- Options -----------------------------------------------------------------

local function check_options(opts)
  if type(opts) ~= "table" then error("bad argument #2 to 'installation' (table expected)", 3) end
  for k in pairs(opts) do
    if k ~= "token" and M.defaults[k] == nil then
      error(("unknown option '%s' to 'installation'"):format(tostring(k)), 3)
    end
  end
  if type(opts.token) ~= "string" or opts.token == "" then
    error("option 'token' is required (the installation access token)", 3)
  end
  local o = {}
  for k, v in pairs(M.defaults) do
    if opts[k] == nil then o[k] = v else o[k] = opts[k] end
  end
  if type(o.retries) ~= "number" or o.retries < 0 or o.retries % 1 ~= 0 then
    error("option 'retries' must be a whole number >= 0", 3)
  end
  for _, k in ipairs({ "retry_base", "max_retry_delay" }) do
    if type(o[k]) ~= "number" or o[k] < 0 then error(("option '%s' must be a number >= 0"):format(k), 3) end
  end
  return o
end

local function check_base_url(url)
  if type(url) ~= "string" or not url:match("^https?://[^/?#%s]+") or url:find("[%c%s?#]") then
    error("option 'base_url' must be an http:// or https:// URL without query or fragment", 3)
  end
  return (url:gsub("/+$", ""))
end

local function user_agent()
  return ("vercel-marketplace-lua/%s (libcurl/%s; %s)"):format(core.VERSION, core.CURL_VERSION, _VERSION)
end

--- Open an installation: the handle every operation goes through.
-- One connection is kept alive and reused for all its requests.
-- @tparam string id the installation id (`integrationConfigurationId`)
-- @tparam table opts `token` (required) and the options of `defaults`
-- @return the installation object
function M.installation(id, opts)
  if type(id) ~= "string" then error("bad argument #1 to 'installation' (string expected)", 2) end
  local esc, problem = core.escape_id(id)
  if not esc then error("bad argument #1 to 'installation' (installation id " .. problem .. ")", 2) end
  local o = check_options(opts)
  local base = check_base_url(o.base_url)
  local session = core.session({
    token = opts.token,
    timeout = o.timeout,
    connect_timeout = o.connect_timeout,
    max_response_size = o.max_response_size,
    ca_file = o.ca_file or nil,
    ca_path = o.ca_path or nil,
    user_agent = o.user_agent or user_agent(),
  })
  return setmetatable({
    id = id,
    base_url = base,
    _prefix = "/v1/installations/" .. esc,
    _opts = o,
    _session = session,
    _sleep = core.sleep,
  }, Installation)
end

return M
