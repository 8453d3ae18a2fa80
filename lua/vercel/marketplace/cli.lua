--- The `vercel-marketplace` command line, as a module the specs can drive.
--
--    local cli = require "vercel.marketplace.cli"
--    os.exit(cli.main(arg))
--
-- `main(args, env)` parses `args`, runs one command and returns the exit
-- code: 0 done, 1 an API or network failure (any item of a batch failed) or
-- an internal error, 2 a usage or validation error (then nothing was sent),
-- 130 interrupted by SIGINT.  `env` replaces the process's streams and
-- environment, all optional: `stdin`, `stdout`, `stderr` (anything with
-- `:write`/`:read`), `getenv(name)`, `isatty` (is stderr a terminal: a
-- boolean, default `test -t 2`), `marketplace` (the client module) and
-- `trap_interrupt` (default true: before its first request the command takes
-- SIGINT over with `core.trap_interrupt`; false leaves the process's
-- handling alone, for a caller that is not the command).
--
-- The token (`--token` or `VERCEL_TOKEN`) is never printed: no message
-- quotes an argument the user typed but a FILE (a misplaced token could be
-- any of them), and as a second guard every line written (the debug log
-- too) is scrubbed of whatever may be a token and of the secret values the
-- files carry, as is and as JSON or the terminal would show them.
-- Strings from the server are shown with their control characters escaped.
-- @module vercel.marketplace.cli
local core = require "vercel.marketplace.core"
local errors = require "vercel.marketplace.error"
local response = require "vercel.marketplace.response"

local M = {}

-- 130: killed by SIGINT, as a shell reports it (128 + 2).
local OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
M.EXIT = { ok = OK, failed = FAILED, usage = USAGE, interrupted = INTERRUPTED }

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

Exit codes: 0 done, 1 an API or network failure (any item failed) or an
internal error, 2 a usage or validation error (then nothing was sent),
130 interrupted (Ctrl-C: what became of each item is printed).
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
Interrupted (Ctrl-C, exit 130), it prints what became of every item: done,
failed, in flight (outcome unknown) or not started; running it again is safe.
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
-- rely on messages never quoting an argument.  The same minimums as the
-- library's (`core.redact`: tokens under 8 bytes, secrets under 4 uncut).
local MIN_SCRUB, MIN_SECRET = core.MIN_CUT_TOKEN, core.MIN_CUT_SECRET

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

local secret_values = response.secret_values

-- A value as it may be written: as is, inside a JSON string (`"` becomes
-- `\"`), and as `shown` prints it.
local function forms(value)
  local encoded = core.encode_value(value)
  return { value, encoded and encoded:sub(2, -2), shown(value) }
end

-- What is cut from every line written: `:add(values, min, mark)` adds the
-- strings of `values` at least `min` bytes long (in each of their forms),
-- `:cut(s)` replaces them by `mark`.  A sync file may carry thousands of
-- secrets, so the forms are filed by their first PREFIX bytes and a line is
-- searched only for those whose start it holds: one pass per line, not one
-- per value (SIGINT's report of every item must be written within a second).
local PREFIX = MIN_SECRET -- no value cut is shorter
local Scrubber = {}
Scrubber.__index = Scrubber

local function scrubber(tokens)
  return setmetatable({ index = {}, mark = {} }, Scrubber):add(tokens, MIN_SCRUB, "[token]")
end

function Scrubber:add(values, min, mark)
  for _, v in ipairs(values) do
    if type(v) == "string" and #v >= min then
      for _, f in pairs(forms(v)) do
        local key = f:sub(1, PREFIX)
        self.index[key] = self.index[key] or {}
        if not self.mark[f] then table.insert(self.index[key], f) end
        self.mark[f] = self.mark[f] or mark
      end
    end
  end
  return self
end

function Scrubber:cut(s)
  if next(self.index) == nil then return s end
  local found, seen = {}, {}
  for i = 1, #s - PREFIX + 1 do
    local key = s:sub(i, i + PREFIX - 1)
    if self.index[key] and not seen[key] then
      seen[key] = true
      for _, f in ipairs(self.index[key]) do found[#found + 1] = f end
    end
  end
  if not found[1] then return s end
  -- The core's cut: every byte of every match, so a value holding another or
  -- overlapping another's end is cut whole, no tail left behind.
  local tokens, secrets = {}, {}
  for _, f in ipairs(found) do
    local into = self.mark[f] == "[token]" and tokens or secrets
    into[#into + 1] = f
  end
  return core.redact(s, tokens, secrets)
end

local Ctx = {}
Ctx.__index = Ctx

-- JSON output is escaped by the encoder: only human output is tamed.
function Ctx:out(s)
  s = self.scrub:cut(s)
  self.stdout:write(self.json and s or tame(s))
end
function Ctx:err(s) self.stderr:write(tame(self.scrub:cut(s))) end

-- Secret values read from a file (`secret_values`): cut from every line
-- written from now on (an error's `limit` may echo them).
function Ctx:hide(values)
  self.scrub:add(values, MIN_SECRET, "[secret]")
end

-- A resource's fields without its methods: the encoder refuses a table
-- whose metatable has __index (it could hide contents).
local function plain(v)
  if type(v) ~= "table" or getmetatable(v) == nil or getmetatable(v) == core.array_mt then return v end
  local t = {}
  for k, x in next, v do t[k] = x end
  return t
end

-- Encode a value as JSON, the same bytes every run: object keys sorted
-- (Lua's table order changes from one run to the next, so two exports could
-- not be diffed), arrays in order, every scalar by the core's encoder (exact
-- integers, escapes).  A table with a key that is not a string goes to the
-- core's encoder whole.
local function json(v)
  v = plain(v)
  if type(v) ~= "table" then return core.encode_value(v) or "null" end
  local keys, n = {}, #v
  for k in next, v do
    if type(k) ~= "string" then
      if n == 0 or type(k) ~= "number" then return core.encode_value(v) or "null" end
    else
      keys[#keys + 1] = k
    end
  end
  if n > 0 and keys[1] == nil then
    local parts = {}
    for i = 1, n do parts[i] = json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  if n > 0 or getmetatable(v) == core.array_mt then return core.encode_value(v) or "null" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = core.encode_value(k) .. ":" .. json(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
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

-- Report a failure: the error on stderr (after `what` failed, if given),
-- and in --json mode on stdout.
function Ctx:fail(code, what, e)
  self:err(PROG .. ": " .. shown((what and (what .. ": ") or "") .. tostring(e)) .. "\n")
  if self.json then
    self:out(json_object({ { "ok", "false" }, { "error", json_error(e) } }) .. "\n")
  end
  return code
end

local function interruption(message)
  return errors.new("interrupted", message or "interrupted (SIGINT)")
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

local function label(file) return file == "-" and "standard input" or file end

-- The raw text of FILE (`-`: standard input).  A directory opens but does
-- not read: every failure is a usage error that names the file.
function Ctx:read(file)
  local f, why = self.stdin, nil
  if file ~= "-" then f, why = io.open(file, "rb") end
  if not f then usage_error("cannot read %s", why or file) end
  local s, err = f:read("*a")
  if f ~= self.stdin then f:close() end
  if type(s) ~= "string" then
    usage_error("cannot read %s: %s", label(file), tostring(err or "read failed"))
  end
  return s
end

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
  self:hide(secret_values(body.secrets, {}))
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
  local okp, inst = pcall(self.marketplace.installation, id, { token = token, base_url = base, log = self:logger() })
  -- The client refusing its settings (a bad --base-url) is a usage error.
  if not okp then usage_error("%s", (tostring(inst):gsub("^[^\n]-:%d+: ", ""))) end
  self.inst = inst
  -- From the first request on, Ctrl-C ends the transfer or the wait under
  -- way (as an `interrupted` failure) and the command reports what it did.
  -- Before it the interpreter's own handler stops the Lua code: nothing sent.
  if self.trap then core.trap_interrupt() end
  return inst
end

-- With MARKETPLACE_DEBUG=1, the client's log lines (one per attempt), cut
-- like every other line; nil leaves the client's default (none, then).
function Ctx:logger()
  if self.getenv("MARKETPLACE_DEBUG") ~= "1" then return nil end
  return function(line) self:err(line .. "\n") end
end

-- Progress on stderr, when it is a terminal: one bar per phase, redrawn
-- when the percentage moves (a big file would otherwise flood the terminal).
function Ctx:progress(phase)
  if not self.isatty() then return nil end
  local width, last = 30, nil
  return function(done, total)
    local pct = total > 0 and math.floor(100 * done / total) or 100
    self.mid_bar = done < total
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
local EXIT_FOR = { validation = USAGE, interrupted = INTERRUPTED }
local function exit_for(err) return EXIT_FOR[err.kind] or FAILED end

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

-- The installation's resources, or nil and an error: an answer whose
-- `resources` is not an array of objects is a `decode` error, not a value
-- to index.
local function resources(inst)
  local list, err = inst:list()
  if not list then return nil, err end
  local n = #list
  for k, r in pairs(list) do
    local why = (type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0) and "got a JSON object"
        or type(r) ~= "table" and ("item %d is a %s"):format(k, type(r))
    if why then
      return nil, errors.new("decode", "the list of resources: expected an array of objects, " .. why)
    end
  end
  return list
end

function run.list(ctx, s)
  local list, err = resources(ctx:installation(s))
  if not list then return ctx:fail(exit_for(err), "list", err) end
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
  ctx:hide(secret_values(list, {}))
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
  local list, err = resources(inst)
  if not list then return nil, err end
  local ids = {}
  for _, r in ipairs(list) do
    local id = r.partnerId
    if type(id) == "string" and not keep[id] then ids[#ids + 1] = id end
  end
  return ids
end

-- What became of an item, in the words the report uses.
local STATES = { done = "done", failed = "failed", in_flight = "in flight (outcome unknown)",
  not_started = "not started" }

-- Run a batch, adding each item's outcome `{op, id, state, err}` to `ops`;
-- the error that stopped it early (SIGINT: kind "interrupted"), if any.  A
-- batch that stops early raises an error object holding every item's result.
local function batch(ctx, inst, op, items, n, ops)
  local method = op == "import" and "import_many" or "delete_many"
  local ok, results = pcall(inst[method], inst, items, { concurrency = n, on_progress = ctx:progress(op) })
  local stop
  if not ok then
    if not (errors.is(results) and type(results.results) == "table") then error(results, 0) end
    stop, results = results, results.results
  end
  for i, r in ipairs(results) do
    ops[#ops + 1] = { op = op, id = items[i].id, state = r.state or (r.ok and "done" or "failed"), err = r.err }
  end
  return stop
end

local function not_started(ops, op, items)
  for _, it in ipairs(items) do ops[#ops + 1] = { op = op, id = it.id, state = "not_started" } end
end

-- The ids imported and deleted, the failures, and how many items are in
-- each state.
local function tally(ops)
  local imported, deleted, failures = {}, {}, {}
  local counts = { done = 0, failed = 0, in_flight = 0, not_started = 0 }
  for _, x in ipairs(ops) do
    counts[x.state] = counts[x.state] + 1
    if x.state == "done" then
      local list = x.op == "import" and imported or deleted
      list[#list + 1] = x.id
    elseif x.state == "failed" then
      failures[#failures + 1] = x
    end
  end
  return imported, deleted, failures, counts
end

local function json_op(x)
  local fields = { { "op", json(x.op) }, { "id", json(x.id) } }
  if x.state == "failed" then fields[#fields + 1] = { "error", json_error(x.err) } end
  return json_object(fields)
end

-- The report of a sync: `ops` as `tally` reads them; `stop`, the error that
-- ended it early (then every item is listed with what became of it: sync
-- only upserts and deletes, so running it again finishes the job).
function Ctx:sync_report(ops, stop)
  local imported, deleted, failures, counts = tally(ops)
  local code = stop and exit_for(stop) or #failures > 0 and FAILED or OK
  if self.json then
    local fields = { { "ok", json(code == OK) }, { "dry_run", "false" },
      { "imported", json(#imported) }, { "deleted", json(#deleted) }, { "failed", json(#failures) },
      { "imports", json_array(imported) }, { "deletes", json_array(deleted) },
      { "failures", json_array(failures, json_op) } }
    if stop then
      fields[#fields + 1] = { "in_flight", json(counts.in_flight) }
      fields[#fields + 1] = { "not_started", json(counts.not_started) }
      fields[#fields + 1] = { "items", json_array(ops, function(x)
        return json_object({ { "op", json(x.op) }, { "id", json(x.id) }, { "state", json(x.state) } })
      end) }
      fields[#fields + 1] = { "error", json_error(stop) }
    end
    self:out(json_object(fields) .. "\n")
  end
  if self.mid_bar then self:err("\n") end -- a stopped batch's progress bar: end its line
  for _, x in ipairs(failures) do
    self:err(("%s: failed to %s %s: %s\n"):format(PROG, x.op, shown(x.id), shown(x.err)))
  end
  if stop then
    self:err(("%s: sync: %s; what was done stays done, and running it again is safe\n"):format(PROG, shown(stop)))
  end
  if self.json then return code end
  if stop then
    self:out(("%s: imported %d, deleted %d, failed %d, in flight (outcome unknown) %d, not started %d\n"):format(
      stop.kind, #imported, #deleted, #failures, counts.in_flight, counts.not_started))
    for _, x in ipairs(ops) do self:out(("  %s: %s %s\n"):format(STATES[x.state], x.op, shown(x.id))) end
  else
    self:out(("imported %d, deleted %d, failed %d\n"):format(#imported, #deleted, #failures))
  end
  return code
end

-- A dry run's report: the items that would be imported and deleted.
function Ctx:dry_report(items, doomed)
  local imports, deletes = {}, {}
  for i, it in ipairs(items) do imports[i] = it.id end
  for i, it in ipairs(doomed) do deletes[i] = it.id end
  if self.json then
    return self:done({ { "dry_run", "true" }, { "imported", json(#imports) }, { "deleted", json(#deletes) },
      { "failed", "0" }, { "imports", json_array(imports) }, { "deletes", json_array(deletes) },
      { "failures", "[]" } })
  end
  self:out(("dry run, nothing was sent: would import %d, delete %d\n"):format(#imports, #deletes))
  for _, id in ipairs(imports) do self:out("  + " .. shown(id) .. "\n") end
  for _, id in ipairs(deletes) do self:out("  - " .. shown(id) .. "\n") end
  return OK
end

function run.sync(ctx, s, pos)
  local n = concurrency(s.concurrency)
  local v, is_array = ctx:read_json(pos[1])
  if not is_array then usage_error("%s: expected a JSON array of resources", label(pos[1])) end
  local values = {}
  for _, raw in ipairs(v) do
    if type(raw) == "table" then secret_values(raw.secrets, values) end
  end
  ctx:hide(values)
  local items, problems = validate_items(ctx.marketplace, "import", v, "required")
  if #problems > 0 then return ctx:refuse(pos[1], problems) end
  local dry = s["dry-run"] == true
  if s.prune and #items == 0 and not dry and not s["allow-empty"] then
    usage_error("sync: %s holds no resources, so --prune would delete every resource of the installation;"
      .. " pass --allow-empty if that is meant (--dry-run lists them)", label(pos[1]))
  end
  if dry and not s.prune then return ctx:dry_report(items, {}) end
  local inst = ctx:installation(s)
  local doomed, stop = {}, nil
  if s.prune then
    local keep = {}
    for _, it in ipairs(items) do keep[it.id] = true end
    local ids, err = to_prune(inst, keep)
    if not ids then
      if err.kind ~= "interrupted" then return ctx:fail(FAILED, "sync: listing resources to prune", err) end
      stop = err
    end
    for i, id in ipairs(ids or {}) do doomed[i] = { id = id } end
  end
  if dry then return ctx:dry_report(items, doomed) end
  -- Imports, then deletes; once stopped, what is left is not started.
  local ops = {}
  for _, phase in ipairs({ { "import", items }, { "delete", doomed } }) do
    if not stop and core.interrupted() then stop = interruption() end -- SIGINT between phases
    if stop then not_started(ops, phase[1], phase[2])
    elseif #phase[2] > 0 then stop = batch(ctx, inst, phase[1], phase[2], n, ops) end
  end
  return ctx:sync_report(ops, stop)
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

-- A usage error: nothing was sent, exit code 2.
function Ctx:usage(msg)
  self:err(PROG .. ": " .. shown(msg) .. "\nTry '" .. PROG .. " --help'.\n")
  if self.json then
    self:out(json_object({ { "ok", "false" }, { "error", json_error(errors.new("usage", msg)) } }) .. "\n")
  end
  return USAGE
end

-- A raised error.  Ours is a usage error (the client refusing its settings
-- is made one too).  An `interrupted` error object, or the interpreter's own
-- SIGINT error before the command took SIGINT over (lua.c and luajit.c raise
-- "interrupted!" in the running Lua code), is an interruption: exit 130.
-- Anything else is a bug, ours or the client's, raised at any point of the
-- command, so perhaps after requests were sent: kind "internal", exit 1,
-- never a usage error.
function Ctx:raised(raised)
  if getmetatable(raised) == Usage then return self:usage(raised.message) end
  if errors.is(raised) and raised.kind == "interrupted" then return self:fail(INTERRUPTED, nil, raised) end
  local msg = tostring(raised)
  if msg:match("^[^\n]-:%d+: interrupted!$") or msg == "interrupted!" then
    return self:fail(INTERRUPTED, nil, interruption("interrupted (SIGINT) before any request; nothing was sent"))
  end
  return self:fail(FAILED, nil, errors.new("internal", msg))
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
    trap = env.trap_interrupt ~= false,
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
-- @treturn integer the exit code: 0 done, 1 failed (or an internal error), 2
--  usage or validation error, 130 interrupted
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
  return ctx:raised(code)
end

return M
