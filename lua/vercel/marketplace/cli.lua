--- The `vercel-marketplace` command line, as a module the specs can drive.
--
--    local cli = require "vercel.marketplace.cli"
--    os.exit(cli.main(arg))
--
-- `main(args, env)` parses `args`, runs one command and returns the exit
-- code: 0 done, 1 an API or network failure (any item of a batch failed), 2 a
-- usage or validation error (then nothing was sent).  `env` replaces the
-- process's streams and environment, all optional: `stdin`, `stdout`,
-- `stderr` (anything with `:write`/`:read`), `getenv(name)`, `isatty` (is
-- stderr a terminal: a boolean, default `test -t 2`) and `marketplace` (the
-- client module).
--
-- The token (`--token` or `VERCEL_TOKEN`) is never printed: no message
-- quotes an argument the user typed but a FILE (a misplaced token could be
-- any of them), and as a second guard every line written is scrubbed of
-- whatever may be a token, as is and as JSON or the terminal would show it.
-- Strings from the server are shown with their control characters escaped.
-- @module vercel.marketplace.cli
local core = require "vercel.marketplace.core"
local errors = require "vercel.marketplace.error"
local response = require "vercel.marketplace.response"

local M = {}

local OK, FAILED, USAGE = 0, 1, 2
M.EXIT = { ok = OK, failed = FAILED, usage = USAGE }

local PROG = "vercel-marketplace"
local batch_limits = require "vercel.marketplace.batch"
local MAX_CONCURRENCY = batch_limits.MAX_CONCURRENCY

-- Help ----------------------------------------------------------------------

local GLOBAL_HELP = [[
Global options (before or after the command):
  --installation ID  the installation (integrationConfigurationId);
                     default $VERCEL_INSTALLATION_ID
  --base-url URL     the API root; default $VERCEL_API_URL, else
                     https://api.vercel.com
  --token TOKEN      the installation access token; default $VERCEL_TOKEN
                     (prefer the variable: arguments show in `ps`)
  --json             print one JSON object on stdout: {"ok": true, ...} or
                     {"ok": false, "error": {...}}
  -h, --help         help for the command

Exit codes: 0 done, 1 an API or network failure (any item failed),
2 a usage or validation error (then nothing was sent).
FILE may be `-` for standard input.]]

-- Every command: its arguments, the options it takes beyond the global
-- ones, whether it talks to the API, and its help.
local COMMANDS = {
  import = { args = { "ID", "FILE" }, api = true, summary = "import (upsert) a resource from a JSON body",
    help = [[
Import (upsert) resource ID: PUT /v1/installations/{installation}/resources/ID.
FILE holds the Import body as JSON: productId, name, status (required),
ownership, metadata, billingPlan, notification, extras, secrets.
The body is validated first; an invalid one is refused (exit 2).]] },
  update = { args = { "ID", "FILE" }, api = true, summary = "update a resource partially",
    help = [[
Update resource ID partially: PATCH .../resources/ID.  FILE holds the
Update body as JSON; fields left out stay as they are.]] },
  get = { args = { "ID" }, api = true, summary = "print one resource",
    help = "Print resource ID as the API returns it: GET .../resources/ID." },
  list = { args = {}, api = true, summary = "list the installation's resources",
    help = "List the installation's resources: GET .../resources (partner ids in partnerId)." },
  delete = { args = { "ID" }, api = true, summary = "delete a resource",
    help = "Delete resource ID: DELETE .../resources/ID." },
  secrets = { args = { "ID", "FILE" }, flags = { partial = true }, api = true,
    summary = "replace (or merge) a resource's secrets",
    help = [[
Replace the secrets of resource ID: PUT .../resources/ID/secrets.  FILE holds
a JSON array of {name, value, prefix?, environmentOverrides?}.
  --partial  overwrite only the secrets named in FILE, keep the others
Secret values are never printed.]] },
  validate = { args = { "KIND", "FILE" }, api = false, summary = "check bodies offline (no token needed)",
    help = [[
Check FILE offline against the API's schema, as import/update would; nothing
is sent and no token is needed.  KIND is `import` or `update`.  FILE holds one
body, or a JSON array of bodies; an array's items may carry an `id` (a sync
file), which is checked as a resource id.  Every problem is listed by item
and path; exit 2 if there is any.]] },
  sync = { args = { "FILE" }, flags = { prune = true, ["allow-empty"] = true, ["dry-run"] = true, concurrency = "N" },
    api = true,
    summary = "import every resource of a file, optionally delete the others",
    help = ([[
Import every resource of FILE, a JSON array of Import bodies each with an
`id` field (the resource id).  Every item is validated first: if any is
invalid the whole file is refused, every problem listed, nothing sent (exit 2).
  --prune          also delete the installation's resources that are not in
                   FILE (--dry-run first to see which)
  --allow-empty    let --prune act on an empty array, deleting every resource
                   (refused without it: an empty export is more often a bug)
  --dry-run        validate, then print what would change; no write is sent
                   (with --prune the resources are listed)
  --concurrency N  requests in flight at once (1-%d; default: %d)
Prints what changed: imported N, deleted M, failed K, and each failure.
A progress bar is drawn on stderr when it is a terminal.]]):format(MAX_CONCURRENCY, batch_limits.DEFAULT_CONCURRENCY) },
  help = { args = {}, optional = { "COMMAND" }, api = false, summary = "help for a command",
    help = "Print help for COMMAND, or the list of commands." },
}
local ORDER = { "import", "update", "get", "list", "delete", "secrets", "validate", "sync", "help" }

local function usage_line(name)
  local c = COMMANDS[name]
  local parts = { PROG, name }
  for _, a in ipairs(c.args) do parts[#parts + 1] = a end
  for _, a in ipairs(c.optional or {}) do parts[#parts + 1] = "[" .. a .. "]" end
  local flags = {}
  for f, v in pairs(c.flags or {}) do flags[#flags + 1] = "[--" .. f .. (v == true and "" or " " .. v) .. "]" end
  table.sort(flags)
  for _, f in ipairs(flags) do parts[#parts + 1] = f end
  return table.concat(parts, " ") .. " [options]"
end

local function general_help()
  local lines = { "Usage: " .. PROG .. " COMMAND [ARGS] [options]", "",
    "Import, update, read, list and delete Vercel Marketplace resources.", "", "Commands:" }
  for _, name in ipairs(ORDER) do
    lines[#lines + 1] = ("  %-9s %s"):format(name, COMMANDS[name].summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "`" .. PROG .. " help COMMAND` or `" .. PROG .. " COMMAND --help` for more."
  lines[#lines + 1] = ""
  lines[#lines + 1] = GLOBAL_HELP
  return table.concat(lines, "\n") .. "\n"
end

local function command_help(name)
  return "Usage: " .. usage_line(name) .. "\n\n" .. COMMANDS[name].help .. "\n\n" .. GLOBAL_HELP .. "\n"
end

-- Output --------------------------------------------------------------------

-- A usage error, raised inside the CLI and turned into exit code 2.
local Usage = {}
local function usage_error(fmt, ...)
  error(setmetatable({ message = fmt:format(...) }, Usage), 0)
end

local function hex(c)
  return (c:gsub(".", function(b) return ("\\x%02x"):format(b:byte()) end))
end

-- A string from the server as the terminal will show it: control characters
-- (C0, DEL, and C1 written in UTF-8) as `\xNN`, so a name can neither move
-- the cursor, recolour the terminal nor fake a line of ours.  Backslashes
-- stay: clean text is printed exactly as it is.
local function shown(s)
  return (tostring(s):gsub("%c", hex):gsub("\194[\128-\159]", hex))
end

-- The last guard on human output: no control character but the line
-- breaks and tabs we write (and the progress bar's \r).
local KEEP = { ["\n"] = true, ["\r"] = true, ["\t"] = true }
local function tame(s)
  return (s:gsub("%c", function(c) if not KEEP[c] then return hex(c) end end))
end

-- Shorter strings are too likely to occur by chance to be scrubbed; they
-- rely on messages never quoting an argument.
local MIN_SCRUB = response.MIN_TOKEN_CUT

-- Whatever may be a token: VERCEL_TOKEN, and whatever follows a literal
-- `--token` or is glued to it (`--token=T`, `--tokenT`), even where the
-- parse went wrong (`--installation --token T list` made T the command).
local function tokens_of(args, getenv)
  local list = { getenv("VERCEL_TOKEN") }
  for i, a in ipairs(args) do
    if a == "--token" then list[#list + 1] = args[i + 1]
    else list[#list + 1] = a:match("^%-%-token=?(.+)$") end
  end
  return list
end

-- A token as it may be written: as is, inside a JSON string (`"` becomes
-- `\"`), and as `shown` prints it.
local function forms(token)
  local encoded = core.encode_value(token)
  return { token, encoded and encoded:sub(2, -2), shown(token) }
end

local function scrubber(tokens)
  local written = {}
  for _, t in ipairs(tokens) do
    if type(t) == "string" and #t >= MIN_SCRUB then
      for _, f in pairs(forms(t)) do written[#written + 1] = f end
    end
  end
  -- Longest first: a token holding another is cut whole.
  table.sort(written, function(a, b) return #a > #b end)
  return function(s)
    for _, w in ipairs(written) do s = response.cut(s, w, "***") end
    return s
  end
end

local Ctx = {}
Ctx.__index = Ctx

-- JSON output is escaped by the encoder: only human output is tamed.
function Ctx:out(s)
  s = self.scrub(s)
  self.stdout:write(self.json and s or tame(s))
end
function Ctx:err(s) self.stderr:write(tame(self.scrub(s))) end

-- A resource's fields without its methods: the encoder refuses a table
-- whose metatable has __index (it could hide contents).
local function plain(v)
  if type(v) ~= "table" or getmetatable(v) == nil or getmetatable(v) == core.array_mt then return v end
  local t = {}
  for k, x in next, v do t[k] = x end
  return t
end

-- Encode a value as JSON with the core's encoder (exact integers).
local function json(v)
  local s = core.encode_value(plain(v))
  return s or "null"
end

-- A JSON array from a Lua array: `[]` when it is empty, never `{}`.
local function json_array(list, encode)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = (encode or json)(v) end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- A JSON object from ordered `{key, already-encoded value}` pairs.
local function json_object(pairs_)
  local parts = {}
  for i, kv in ipairs(pairs_) do parts[i] = json(kv[1]) .. ":" .. kv[2] end
  return "{" .. table.concat(parts, ",") .. "}"
end

local ERROR_FIELDS = { "kind", "message", "status", "code", "api_message", "request_id", "retry_after",
  "limit", "method", "path", "attempts" }

-- An error object as JSON: its data fields, `errors` always an array.
local function json_error(e)
  local fields = {}
  for _, k in ipairs(ERROR_FIELDS) do
    if e[k] ~= nil then fields[#fields + 1] = { k, json(e[k]) } end
  end
  if e.errors then fields[#fields + 1] = { "errors", json_array(e.errors) } end
  return json_object(fields)
end

-- Report a failure: the error on stderr, and in --json mode on stdout.
function Ctx:fail(code, what, e)
  self:err(PROG .. ": " .. shown(what .. ": " .. tostring(e)) .. "\n")
  if self.json then
    self:out(json_object({ { "ok", "false" }, { "error", json_error(e) } }) .. "\n")
  end
  return code
end

-- Success in --json mode: `{"ok": true, ...fields}`; else the human line.
function Ctx:done(fields, line)
  if self.json then
    table.insert(fields, 1, { "ok", "true" })
    self:out(json_object(fields) .. "\n")
  elseif line then
    self:out(line .. "\n")
  end
  return OK
end

-- Arguments -----------------------------------------------------------------

local GLOBAL_VALUES = { installation = true, ["base-url"] = true, token = true }

-- The options that take a value, and every option a message may name: a
-- name we do not know is the user's text, which a message never quotes.
local TAKES_VALUE, KNOWN = { concurrency = true }, { json = true, help = true }
for name in pairs(GLOBAL_VALUES) do TAKES_VALUE[name], KNOWN[name] = true, true end
for _, c in pairs(COMMANDS) do
  for name in pairs(c.flags or {}) do KNOWN[name] = true end
end

-- The value of the option at args[i], from args[i + 1]; an option there
-- is a slip (`--installation --token T`), not a value.
local function option_value(args, i, name)
  local v = args[i + 1]
  if v == nil or v:sub(1, 2) == "--" then
    usage_error("option --%s (argument %d) needs a value", name, i)
  end
  return v
end

-- Add the option args[i] to `o`; the index of its last argument.
local function parse_option(o, args, i)
  local a = args[i]
  local name, value = a:match("^%-%-([%w-]+)=(.*)$")
  name = name or a:match("^%-%-([%w-]+)$")
  if not name then usage_error("argument %d is not an option: options are --NAME (see --help)", i) end
  local f = { name = name, value = value, at = i }
  o.flags[#o.flags + 1] = f
  if TAKES_VALUE[name] and value == nil then
    f.value = option_value(args, i, name)
    return i + 1
  elseif KNOWN[name] and not TAKES_VALUE[name] and value ~= nil then
    usage_error("option --%s takes no value", name)
  end
  return i
end

-- Split `args` into the command, its positional arguments and the options.
local function parse(args)
  local o = { pos = {}, flags = {} }
  local i, n, rest = 1, #args, false
  while i <= n do
    local a = args[i]
    if rest or a == "-" or a:sub(1, 1) ~= "-" then
      if o.command == nil then o.command, o.command_at = a, i else o.pos[#o.pos + 1] = a end
    elseif a == "--" then
      rest = true
    elseif a == "-h" or a == "--help" then
      o.help = true
    elseif a == "--json" then
      o.json = true
    else
      i = parse_option(o, args, i)
    end
    i = i + 1
  end
  return o
end

-- Is `--json` among the options?  Known even when the parse failed, so a
-- usage error is still reported as JSON.
local function wants_json(args)
  for _, a in ipairs(args) do
    if a == "--" then return false end
    if a == "--json" then return true end
  end
  return false
end

-- Check the options against the command; the settings they give.
local function settings(o, cmd)
  local s = {}
  for _, f in ipairs(o.flags) do
    if not (GLOBAL_VALUES[f.name] or (cmd.flags and cmd.flags[f.name])) then
      if KNOWN[f.name] then
        usage_error("'%s' takes no option --%s (usage: %s)", o.command, f.name, usage_line(o.command))
      end
      usage_error("argument %d is not an option of '%s' (usage: %s)", f.at, o.command, usage_line(o.command))
    end
    s[f.name] = f.value == nil and true or f.value
  end
  return s
end

local function check_positionals(o, cmd)
  local want, max = #cmd.args, #cmd.args + #(cmd.optional or {})
  if #o.pos < want then
    usage_error("'%s' needs %s (usage: %s)", o.command, table.concat(cmd.args, " ", #o.pos + 1), usage_line(o.command))
  elseif #o.pos > max then
    usage_error("too many arguments for '%s' (usage: %s)", o.command, usage_line(o.command))
  end
end

local function concurrency(v)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < 1 or n > MAX_CONCURRENCY then
    usage_error("--concurrency must be a whole number from 1 to %d", MAX_CONCURRENCY)
  end
  return math.floor(n)
end

-- Files ---------------------------------------------------------------------

-- The raw text of FILE (`-`: standard input).
function Ctx:read(file)
  if file == "-" then return self.stdin:read("*a") or "" end
  local f, why = io.open(file, "rb")
  if not f then usage_error("cannot read %s", (why or file)) end
  local s = f:read("*a")
  f:close()
  return s
end

local function label(file) return file == "-" and "standard input" or file end

-- FILE decoded: a JSON object or array (a table), and whether it is an array.
function Ctx:read_json(file)
  local text = self:read(file)
  local v, why = response.decode_object(text)
  if not v then usage_error("%s: not a JSON object or array (%s)", label(file), why) end
  return v, text:match("^%s*%[") ~= nil
end

-- Validation ----------------------------------------------------------------

-- Every problem of a list of items as `{item, id, path, message}`.
local function add_problems(problems, item, id, err)
  for _, p in ipairs(err.errors) do
    problems[#problems + 1] = { item = item, id = id, path = p.path, message = p.message }
  end
end

local function check_id(id)
  if type(id) ~= "string" then return "is required (a string)" end
  local esc, why = core.escape_id(id)
  if not esc then return why end
end

-- Validate the items of a file: the `{id, body}` pairs, and every problem
-- found.  `ids`: "required" (a sync file), "optional" (an `id` field is
-- the resource id, not part of the body) or nil (bodies as they are).
local function validate_items(marketplace, kind, list, ids)
  local items, problems, seen = {}, {}, {}
  for i, raw in ipairs(list) do
    local id = type(raw) == "table" and raw.id or nil
    local body = raw
    if type(raw) ~= "table" then
      problems[#problems + 1] = { item = i, path = "", message = "expected object, got " .. type(raw) }
    else
      if ids == "required" or (ids == "optional" and id ~= nil) then
        body = {}
        for k, v in pairs(raw) do if k ~= "id" then body[k] = v end end
        local why = check_id(id)
        if not why and seen[id] then why = "duplicate id (also item " .. seen[id] .. ")" end
        if why then problems[#problems + 1] = { item = i, id = type(id) == "string" and id or nil, path = "id", message = why } end
        if type(id) == "string" then seen[id] = seen[id] or i end
      end
      local ok, err = marketplace.validate(kind, body)
      if not ok then add_problems(problems, i, type(id) == "string" and id or nil, err) end
      items[i] = { id = id, body = body }
    end
  end
  return items, problems
end

local function problem_line(p)
  local where = p.item and ("item " .. p.item .. (p.id and (' (id "' .. p.id .. '")') or "")) or nil
  local path = p.path ~= "" and p.path or nil
  local head = where and path and (where .. ": " .. path) or where or path
  return "  " .. (head and (head .. ": ") or "") .. p.message
end

-- Refuse a file: every problem on stderr (and as JSON), exit code 2.
function Ctx:refuse(file, problems)
  local n = #problems
  self:err(("%s: %s: %d problem%s; nothing was sent\n"):format(PROG, label(file), n, n == 1 and "" or "s"))
  for _, p in ipairs(problems) do self:err(problem_line(p) .. "\n") end
  if self.json then
    local e = errors.new("validation", ("%s: %d problem%s; nothing was sent"):format(label(file), n, n == 1 and "" or "s"))
    e.errors = problems
    self:out(json_object({ { "ok", "false" }, { "error", json_error(e) } }) .. "\n")
  end
  return USAGE
end

-- Validate one body, or refuse the file.
function Ctx:body(kind, file)
  local body = self:read_json(file)
  local ok, err = self.marketplace.validate(kind, body)
  if ok then return body end
  local problems = {}
  add_problems(problems, nil, nil, err)
  return nil, self:refuse(file, problems)
end

-- The installation ----------------------------------------------------------

function Ctx:installation(s)
  local id = s.installation or self.getenv("VERCEL_INSTALLATION_ID")
  local token = s.token or self.getenv("VERCEL_TOKEN")
  if id == nil or id == "" then usage_error("no installation: pass --installation ID or set VERCEL_INSTALLATION_ID") end
  if token == nil or token == "" then usage_error("no token: set VERCEL_TOKEN or pass --token") end
  local base = s["base-url"] or self.getenv("VERCEL_API_URL")
  if base == "" then base = nil end
  local inst = self.marketplace.installation(id, { token = token, base_url = base })
  self.inst = inst
  return inst
end

-- Progress on stderr, when it is a terminal: one bar per phase, redrawn
-- when the percentage moves (a big file would otherwise flood the terminal).
function Ctx:progress(phase)
  if not self.isatty() then return nil end
  local width, last = 30, nil
  return function(done, total)
    local pct = total > 0 and math.floor(100 * done / total) or 100
    if pct == last and done < total then return end
    last = pct
    local fill = math.floor(width * pct / 100)
    self:err(("\r%-7s [%s%s] %d/%d"):format(phase, ("#"):rep(fill), (" "):rep(width - fill), done, total))
    if done >= total then self:err("\n") end
  end
end

-- Commands ------------------------------------------------------------------

local run = {}

-- A validation error means nothing was sent: a usage error, exit code 2.
local function exit_for(err) return err.kind == "validation" and USAGE or FAILED end

local function result_line(verb, id, e) return verb .. " " .. shown(id) .. (e and (": " .. shown(e)) or "") end

function run.import(ctx, s, pos)
  local body, code = ctx:body("import", pos[2])
  if not body then return code end
  local out, err = ctx:installation(s):import(pos[1], body)
  if not out then return ctx:fail(exit_for(err), "import " .. pos[1], err) end
  return ctx:done({ { "id", json(pos[1]) }, { "value", json(out) } },
    result_line("imported", pos[1], type(out.name) == "string" and out.name or nil))
end

function run.update(ctx, s, pos)
  local body, code = ctx:body("update", pos[2])
  if not body then return code end
  local out, err = ctx:installation(s):update(pos[1], body)
  if not out then return ctx:fail(exit_for(err), "update " .. pos[1], err) end
  return ctx:done({ { "id", json(pos[1]) }, { "value", json(out) } }, result_line("updated", pos[1]))
end

-- A resource as `key  value` lines, keys sorted (every one from the server).
local function resource_lines(r)
  local keys, width = {}, 0
  for k in pairs(r) do keys[#keys + 1] = k width = math.max(width, #shown(k)) end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local lines = {}
  for i, k in ipairs(keys) do
    local v = r[k]
    lines[i] = ("%-" .. width .. "s  %s"):format(shown(k), shown(type(v) == "string" and v or json(v)))
  end
  return table.concat(lines, "\n")
end

function run.get(ctx, s, pos)
  local r, err = ctx:installation(s):get(pos[1])
  if not r then return ctx:fail(exit_for(err), "get " .. pos[1], err) end
  return ctx:done({ { "resource", json(r) } }, resource_lines(r))
end

function run.list(ctx, s)
  local list, err = ctx:installation(s):list()
  if not list then return ctx:fail(FAILED, "list", err) end
  local lines = {}
  for i, r in ipairs(list) do
    lines[i] = ("%-24s %-12s %s"):format(shown(r.partnerId), shown(r.status), shown(r.name))
  end
  local text = #lines > 0 and table.concat(lines, "\n") or "no resources"
  return ctx:done({ { "resources", json_array(list) } }, text)
end

function run.delete(ctx, s, pos)
  local ok, err = ctx:installation(s):delete(pos[1])
  if not ok then return ctx:fail(exit_for(err), "delete " .. pos[1], err) end
  return ctx:done({ { "id", json(pos[1]) } }, result_line("deleted", pos[1]))
end

function run.secrets(ctx, s, pos)
  local list, is_array = ctx:read_json(pos[2])
  if not is_array then usage_error("%s: expected a JSON array of secrets", label(pos[2])) end
  local partial = s.partial == true
  local ok, verr = ctx.marketplace.validate("secrets", { secrets = list, partial = partial })
  if not ok then
    local problems = {}
    add_problems(problems, nil, nil, verr)
    return ctx:refuse(pos[2], problems)
  end
  local done, err = ctx:installation(s):update_secrets(pos[1], list, { partial = partial })
  if not done then return ctx:fail(exit_for(err), "secrets " .. pos[1], err) end
  return ctx:done({ { "id", json(pos[1]) }, { "count", json(#list) }, { "partial", json(partial) } },
    ("secrets of %s updated: %d %s"):format(pos[1], #list, partial and "merged" or "replaced"))
end

function run.validate(ctx, _, pos)
  local kind, file = pos[1], pos[2]
  if kind ~= "import" and kind ~= "update" then usage_error("validate: KIND must be import or update") end
  local v, is_array = ctx:read_json(file)
  local list = is_array and v or { v }
  local _, problems = validate_items(ctx.marketplace, kind, list, is_array and "optional" or nil)
  if not is_array then
    for _, p in ipairs(problems) do p.item = nil end -- one body: paths alone
  end
  if #problems > 0 then return ctx:refuse(file, problems) end
  local n = #list
  return ctx:done({ { "kind", json(kind) }, { "count", json(n) }, { "errors", "[]" } },
    ("valid: %d %s bod%s"):format(n, kind, n == 1 and "y" or "ies"))
end

-- The ids of the installation's resources that are not in `keep`.
local function to_prune(inst, keep)
  local list, err = inst:list()
  if not list then return nil, err end
  local ids = {}
  for _, r in ipairs(list) do
    local id = r.partnerId
    if type(id) == "string" and not keep[id] then ids[#ids + 1] = id end
  end
  return ids
end

-- Run a batch; the ids that succeeded and the failures `{op, id, err}`.
local function batch(ctx, inst, op, items, n)
  local method = op == "import" and "import_many" or "delete_many"
  local results = inst[method](inst, items, { concurrency = n, on_progress = ctx:progress(op) })
  local done, failures = {}, {}
  for i, r in ipairs(results) do
    if r.ok then done[#done + 1] = items[i].id
    else failures[#failures + 1] = { op = op, id = items[i].id, err = r.err } end
  end
  return done, failures
end

function Ctx:sync_report(dry, imported, deleted, failures)
  if self.json then
    local function failure(x)
      return json_object({ { "op", json(x.op) }, { "id", json(x.id) }, { "error", json_error(x.err) } })
    end
    self:out(json_object({ { "ok", json(#failures == 0) }, { "dry_run", json(dry) },
      { "imported", json(#imported) }, { "deleted", json(#deleted) }, { "failed", json(#failures) },
      { "imports", json_array(imported) }, { "deletes", json_array(deleted) },
      { "failures", json_array(failures, failure) } }) .. "\n")
  end
  for _, x in ipairs(failures) do
    self:err(("%s: failed to %s %s: %s\n"):format(PROG, x.op, shown(x.id), shown(x.err)))
  end
  if self.json then return #failures == 0 and OK or FAILED end
  if dry then
    self:out(("dry run, nothing was sent: would import %d, delete %d\n"):format(#imported, #deleted))
    for _, id in ipairs(imported) do self:out("  + " .. shown(id) .. "\n") end
    for _, id in ipairs(deleted) do self:out("  - " .. shown(id) .. "\n") end
  else
    self:out(("imported %d, deleted %d, failed %d\n"):format(#imported, #deleted, #failures))
  end
  return #failures == 0 and OK or FAILED
end

local function ids_of(items)
  local ids, set = {}, {}
  for i, it in ipairs(items) do ids[i] = it.id set[it.id] = true end
  return ids, set
end

function run.sync(ctx, s, pos)
  local n = concurrency(s.concurrency)
  local v, is_array = ctx:read_json(pos[1])
  if not is_array then usage_error("%s: expected a JSON array of resources", label(pos[1])) end
  local items, problems = validate_items(ctx.marketplace, "import", v, "required")
  if #problems > 0 then return ctx:refuse(pos[1], problems) end
  local ids, keep = ids_of(items)
  local dry = s["dry-run"] == true
  if s.prune and #items == 0 and not dry and not s["allow-empty"] then
    usage_error("sync: %s holds no resources, so --prune would delete every resource of the installation;"
      .. " pass --allow-empty if that is meant (--dry-run lists them)", label(pos[1]))
  end
  if dry and not s.prune then return ctx:sync_report(true, ids, {}, {}) end
  local inst = ctx:installation(s)
  local doomed = {}
  if s.prune then
    local list, err = to_prune(inst, keep)
    if not list then return ctx:fail(FAILED, "sync: listing resources to prune", err) end
    doomed = list
  end
  if dry then return ctx:sync_report(true, ids, doomed, {}) end
  local imported, failures = batch(ctx, inst, "import", items, n)
  local deleted = {}
  if #doomed > 0 then
    local targets = {}
    for i, id in ipairs(doomed) do targets[i] = { id = id } end
    local f
    deleted, f = batch(ctx, inst, "delete", targets, n)
    for _, x in ipairs(f) do failures[#failures + 1] = x end
  end
  return ctx:sync_report(false, imported, deleted, failures)
end

-- Never quoted: a stray argument may be a misplaced token.
local function unknown_command(where)
  usage_error("unknown command%s; expected one of: %s", where, table.concat(ORDER, ", "))
end

function run.help(ctx, _, pos)
  local name = pos[1]
  if name == nil then ctx:out(general_help()) return OK end
  if not COMMANDS[name] then unknown_command(" after help") end
  ctx:out(command_help(name))
  return OK
end

-- Entry ---------------------------------------------------------------------

-- A raised error: ours (a usage error) or the client's (misuse: a bad
-- --base-url, say).  Either way nothing was sent: exit code 2.
function Ctx:usage(raised)
  local msg = getmetatable(raised) == Usage and raised.message or tostring(raised):gsub("^[^\n]-:%d+: ", "")
  self:err(PROG .. ": " .. shown(msg) .. "\nTry '" .. PROG .. " --help'.\n")
  if self.json then
    self:out(json_object({ { "ok", "false" }, { "error", json_error(errors.new("usage", msg)) } }) .. "\n")
  end
  return USAGE
end

local function tty()
  local r = os.execute("test -t 2")
  return r == true or r == 0
end

local function context(env, tokens)
  env = env or {}
  local isatty = env.isatty
  if type(isatty) ~= "function" then
    if isatty == nil then isatty = tty else local v = isatty isatty = function() return v end end
  end
  return setmetatable({
    stdin = env.stdin or io.stdin, stdout = env.stdout or io.stdout, stderr = env.stderr or io.stderr,
    getenv = env.getenv or os.getenv, isatty = isatty,
    marketplace = env.marketplace or require("vercel.marketplace"), scrub = scrubber(tokens),
  }, Ctx)
end

local function dispatch(ctx, o)
  if o.command == nil then
    if o.help then ctx:out(general_help()) return OK end
    usage_error("no command given")
  end
  local cmd = COMMANDS[o.command]
  if not cmd then unknown_command((" (argument %d)"):format(o.command_at)) end
  if o.help then ctx:out(command_help(o.command)) return OK end
  local s = settings(o, cmd)
  check_positionals(o, cmd)
  return run[o.command](ctx, s, o.pos)
end

--- Run the command line.
-- @tparam table args the arguments (`arg`: `args[1]` is the first one)
-- @tparam[opt] table env streams and environment, see the module's description
-- @treturn integer the exit code: 0 done, 1 failed, 2 usage or validation error
function M.main(args, env)
  local list = {}
  for i = 1, #(args or {}) do list[i] = tostring(args[i]) end
  local getenv = env and env.getenv or os.getenv
  local ctx = context(env, tokens_of(list, getenv))
  ctx.json = wants_json(list)
  local okp, o = pcall(parse, list)
  local ok, code = true, nil
  if okp then ok, code = pcall(dispatch, ctx, o) else ok, code = false, o end
  if ctx.inst then pcall(ctx.inst.close, ctx.inst) end
  if ok then return code end
  return ctx:usage(code)
end

return M
