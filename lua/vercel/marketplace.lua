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
local errors = require "vercel.marketplace.error"
local resource = require "vercel.marketplace.resource"
local response = require "vercel.marketplace.response"
local retry = require "vercel.marketplace.retry"
local transport = require "vercel.marketplace.transport"

local M = {}

--- This library's version, as its C core reports it (`"0.1.0"`).
M.VERSION = core.VERSION

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
-- @field log a function receiving one line per attempt (method, path,
--  outcome, milliseconds, request id; never a body or the token); with the
--  environment variable `MARKETPLACE_DEBUG=1` the default writes to stderr
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
  log = false,
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

local MAX_RESPONSE_LIMIT = 2 ^ 31 - 1 -- answers are held in memory whole
local MAX_SECONDS = 1e6 -- as the C session: longer is surely a unit mistake

local BODY_KINDS = { import = true, update = true, secrets = true }

-- Misuse raises, pointing at the caller of the public function.
local function check_arg(fname, argn, v, expected)
  if type(v) ~= expected then
    error(("bad argument #%d to '%s' (%s expected, got %s)"):format(argn, fname, expected, type(v)), 3)
  end
end

--- Mark a table as a JSON array, so that it is sent as `[]` even when empty.
-- A Lua table cannot tell `{}` from `[]`: inside `metadata` and `extras`
-- an empty table is sent as `{}` unless marked.  Answers mark theirs, so a
-- resource read back keeps its empty arrays when sent again.
-- @tparam[opt] table t the array (default: a new empty one); its metatable is set
-- @treturn table t
-- @usage inst:import("db_1", {productId = "p", name = "n", status = "ready",
--   metadata = {regions = marketplace.array()}})
function M.array(t)
  if t == nil then t = {} end
  check_arg("array", 1, t, "table")
  local mt = getmetatable(t)
  if mt ~= nil and mt ~= core.array_mt then error("bad argument #1 to 'array' (table has a metatable)", 2) end
  return setmetatable(t, core.array_mt)
end

--- Decode JSON text (an object or an array) as answers are decoded: empty
-- arrays stay marked (`marketplace.array`) and integers stay integers on Lua
-- 5.3+, so what a script reads from a file is sent back exactly as written.
-- Plain `cjson.decode` would turn `[]` into a table sent as `{}`.
-- @tparam string text
-- @return the table, or nil and a `decode` error
-- @usage local export = assert(marketplace.decode(io.open("export.json"):read("a")))
function M.decode(text)
  check_arg("decode", 1, text, "string")
  local v, why = response.decode_object(text)
  if v ~= nil then return v end
  if why == "not a JSON object" then return nil, errors.new("decode", "expected a JSON object or array") end
  return nil, errors.new("decode", "invalid JSON: " .. why)
end

--- Validate a request body offline, exactly as `import`/`update` would.
-- The `"secrets"` body is the one `PUT .../secrets` sends:
-- `{secrets = {...}, partial = bool?}` (`update_secrets` builds it from its
-- arguments).
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

-- Installation ------------------------------------------------------------

local Installation = { __name = "vercel.marketplace.installation" }
Installation.__index = Installation

function Installation:__tostring()
  return ("vercel.marketplace.installation(%s, %s)"):format(self.id, self.base_url)
end

-- The operations on one resource: method, path suffix, body kind (nil: no
-- body) and what the answer holds ("object": decoded JSON, "none": true).
local OPS = {
  import = { method = "PUT", kind = "import", answer = "object" },
  update = { method = "PATCH", kind = "update", answer = "object" },
  get = { method = "GET", answer = "object" },
  delete = { method = "DELETE", answer = "none" },
  secrets = { method = "PUT", suffix = "/secrets", kind = "secrets", answer = "none" },
}
M._OPS = OPS

--- Everything about a request that can be known before sending it:
-- `method, url, json` or `nil, err` (a `validation` error: nothing is sent).
-- Batches use this too, so a batch item is refused exactly as a single call.
-- The URL is made in one piece (C); its path is cut from it only when an
-- error or a log line names it (`_path`).
-- @local
function Installation:_prepare(op, id, body)
  local o = OPS[op]
  local url, problem = core.escape_id(id, self._resources, o.suffix)
  if not url then
    return nil, errors.new("validation", "invalid resource id; nothing was sent",
      { errors = { { path = "id", message = problem } } })
  end
  local json
  if o.kind then
    local problems
    json, problems = core.encode(o.kind, body)
    if not json then return nil, errors.validation(o.kind, problems) end
  end
  return o.method, url, json
end

--- The path of one of our URLs (what errors and log lines show).
-- @local
function Installation:_path(url)
  return url:sub(#self.base_url + 1)
end

--- The error of a call stopped by a trapped SIGINT before it sent anything
-- more (`core.trap_interrupt`, used by the command line).
-- @local
function Installation:_interrupted(method, url, attempts)
  return errors.new("interrupted", "interrupted by SIGINT",
    { method = method, path = self:_path(url), attempts = attempts })
end

--- One request with retries: `status, body, meta, attempts` or `nil, err`
-- (`request`, the body table, keeps its secrets out of the error).
-- `attempts` counts every request that left, libcurl's own resends on a
-- fresh connection included, and those stay within `retries`: each attempt
-- may send only what the budget has left.
-- @local
function Installation:_send(method, url, json, request)
  local opts = self._opts
  local attempts = 0
  while true do
    if core.interrupted() then return nil, self:_interrupted(method, url, attempts) end
    local started = self._log and core.now()
    local status, body, meta, retryable, sent = self._session:perform(method, url, json, opts.retries + 1 - attempts)
    attempts = attempts + retry.requests(status, meta, sent)
    if started then self:_log_attempt(method, url, attempts, started, status, body, meta, request) end
    if retry.done(method, status, attempts) then return status, body, meta, attempts end
    local err = response.failure(status, body, meta, request, self._session)
    err.method, err.path, err.attempts = method, self:_path(url), attempts
    if attempts > opts.retries or not retry.retryable(err, retryable) then return nil, err end
    local wait = retry.delay(attempts, err, opts)
    if not wait then return nil, err end
    self._sleep(wait)
  end
end

-- One line per attempt: what was asked, how it ended, how long it took.
-- Bodies and headers are never logged; the line is cut of the token and of
-- the request's secret values anyway, since the server's words are in it.
function Installation:_log_attempt(method, url, attempts, started, status, body, meta, request)
  local outcome = status and tostring(status) or (body .. ": " .. tostring(meta))
  local rid = status and meta.request_id and (" " .. response.request_id(meta, self._session, request)) or ""
  local line = ("vercel.marketplace: %s %s -> %s (attempt %d, %.0f ms)%s"):format(
    method, self:_path(url), outcome, attempts, (core.now() - started) * 1000, rid)
  self._log(response.redact(line, self._session, request))
end

--- The value of a 2xx answer to `method url` after `attempts`, or nil and
-- its decode error (redacted of `request`'s secrets, the body table sent).
-- @local
function Installation:_value(answer, status, body, meta, method, url, attempts, request)
  local v, err = response.value(answer, status, body, meta, self._session, request)
  if v == nil then err.method, err.path, err.attempts = method, self:_path(url), attempts end
  return v, err
end

-- Prepare, send and read one operation.
function Installation:_run(op, id, body)
  local method, url, json = self:_prepare(op, id, body)
  if not method then return nil, url end
  local status, resp, meta, attempts = self:_send(method, url, json, body)
  if not status then return nil, resp end
  return self:_value(OPS[op].answer, status, resp, meta, method, url, attempts, body)
end

--- Import (upsert) a resource: `PUT /v1/installations/{id}/resources/{rid}`.
-- @tparam string id the partner's resource id
-- @tparam table body an Import body (`productId`, `name`, `status`, ...)
-- @return the decoded answer (`{name = ...}`), or nil, err
function Installation:import(id, body)
  check_arg("import", 1, id, "string")
  check_arg("import", 2, body, "table")
  return self:_run("import", id, body)
end

--- Update a resource partially: `PATCH .../resources/{rid}`.
-- Fields left out stay as they are.
-- @tparam string id
-- @tparam table patch an Update body
-- @return the decoded answer (`{name = ...}`), or nil, err
function Installation:update(id, patch)
  check_arg("update", 1, id, "string")
  check_arg("update", 2, patch, "table")
  return self:_run("update", id, patch)
end

--- Read one resource: `GET .../resources/{rid}`.
-- @return a resource object (fields as the API returned them, methods
--  `vercel.marketplace.resource.Resource:update`, `vercel.marketplace.resource.Resource:delete`,
--  `vercel.marketplace.resource.Resource:refresh`), or nil, err
function Installation:get(id)
  check_arg("get", 1, id, "string")
  local v, err = self:_run("get", id)
  if not v then return nil, err end
  return resource.wrap(self, v)
end

--- List the installation's resources: `GET .../resources`.
-- @return an array of resource objects, or nil, err
function Installation:list()
  local url = self._resources:sub(1, -2)
  local status, body, meta, attempts = self:_send("GET", url)
  if not status then return nil, body end
  local v, err = self:_value("object", status, body, meta, "GET", url, attempts)
  if not v then return nil, err end
  if not resource.is_list(v.resources) then
    return nil, errors.new("decode", "expected a \"resources\" array of objects", { status = status,
      request_id = response.request_id(meta, self._session), method = "GET", path = self:_path(url),
      attempts = attempts })
  end
  for _, r in ipairs(v.resources) do resource.wrap(self, r) end
  return v.resources
end

--- Delete a resource: `DELETE .../resources/{rid}`.
-- @return true, or nil, err
function Installation:delete(id)
  check_arg("delete", 1, id, "string")
  return self:_run("delete", id)
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
  return self:_run("secrets", id, { secrets = secrets, partial = opts.partial })
end

-- Batches (vercel.marketplace.batch, loaded on first use) -------------------

local function batch(op)
  return function(self, items, opts)
    return require("vercel.marketplace.batch").run(self, op, items, opts)
  end
end

--- Import many resources: `items` is an array of `{id = ..., body = ...}`.
-- @tparam table items
-- @tparam[opt] table opts `concurrency` (default 8), `on_progress(done, total)`
-- @return an array of results in input order, one per item:
--  `{ok = true, value = ...}` or `{ok = false, err = ...}`
-- @function Installation:import_many
Installation.import_many = batch("import")
--- Update many resources: `items` is an array of `{id = ..., body = patch}`.
-- @tparam table items
-- @tparam[opt] table opts as for `import_many`
-- @return an array of results in input order, as for `import_many`
-- @function Installation:update_many
Installation.update_many = batch("update")
--- Delete many resources: `items` is an array of `{id = ...}` (or of ids).
-- @tparam table items
-- @tparam[opt] table opts as for `import_many`
-- @return an array of results in input order, as for `import_many`
-- @function Installation:delete_many
Installation.delete_many = batch("delete")

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
  if o.log and type(o.log) ~= "function" then error("option 'log' must be a function", 3) end
  for _, k in ipairs({ "retry_base", "max_retry_delay" }) do
    if type(o[k]) ~= "number" or not (o[k] >= 0) then error(("option '%s' must be a number >= 0"):format(k), 3) end
  end
  -- The session checks these too; here the message points at the caller.
  for _, k in ipairs({ "timeout", "connect_timeout" }) do
    if type(o[k]) ~= "number" or not (o[k] > 0 and o[k] < MAX_SECONDS) then
      error(("option '%s' must be a positive number of seconds, under %d"):format(k, MAX_SECONDS), 3)
    end
  end
  local size = o.max_response_size
  if type(size) ~= "number" or not (size >= 1 and size <= MAX_RESPONSE_LIMIT) or size % 1 ~= 0 then
    error("option 'max_response_size' must be a whole number of bytes from 1 to 2 GiB", 3)
  end
  for _, k in ipairs({ "ca_file", "ca_path", "user_agent" }) do
    if o[k] and type(o[k]) ~= "string" then error(("option '%s' must be a string"):format(k), 3) end
  end
  return o
end

local function check_base_url(url)
  -- No user:password@: credentials would show in tostring, errors and logs.
  if type(url) ~= "string" or not url:match("^https?://[^/?#%s@]+") or url:find("[%c%s?#@]") then
    error("option 'base_url' must be an http:// or https:// URL without credentials, query or fragment", 3)
  end
  return (url:gsub("/+$", ""))
end

local function stderr_log(line)
  io.stderr:write(line, "\n")
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
  local session, sleep = transport.open({
    token = opts.token,
    timeout = o.timeout,
    connect_timeout = o.connect_timeout,
    max_response_size = o.max_response_size,
    ca_file = o.ca_file or nil,
    ca_path = o.ca_path or nil,
    user_agent = o.user_agent or nil, -- nil: each transport names itself
  })
  return setmetatable({
    _log = o.log or (os.getenv("MARKETPLACE_DEBUG") == "1" and stderr_log) or nil,
    id = id,
    base_url = base,
    _resources = base .. "/v1/installations/" .. esc .. "/resources/",
    _opts = o,
    _session = session,
    _sleep = sleep,
  }, Installation)
end

return M
