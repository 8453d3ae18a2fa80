-- The emulator's resources. One nginx worker, so a module table is the whole
-- database; with --state FILE it is also written to disk after every change
-- (write a temporary file, then rename, so a crash never leaves half a file;
-- bin/vercel-marketplace-emulator makes sure no other emulator writes it).
-- The file holds secret values in clear, so it is created owner-only (0600).
local json = require "vercel.marketplace.emulator.json"

local M = {}

-- Fields an import may set; everything else in a record is ours.
local BODY_FIELDS = { "productId", "name", "status", "ownership", "metadata",
                      "extras", "billingPlan", "notification" }

local db = { seq = 0, order = {}, records = {} }  -- order: keys, oldest first
local state_file                                 -- nil: memory only

local function key(icfg, rid) return icfg .. "\0" .. rid end

-- umask(2) through LuaJIT's FFI (nginx runs us on LuaJIT); nil elsewhere.
local umask = (function()
  local ok, ffi = pcall(require, "ffi")
  if not ok then return nil end
  pcall(ffi.cdef, "unsigned int umask(unsigned int mask);")
  local found, fn = pcall(function() return ffi.C.umask end)
  return found and fn or nil
end)()

-- io.open for writing, the file created 0600 whatever nginx's umask. A
-- leftover file is removed first, or it would keep its own mode. One worker
-- and no yield in between, so the process-wide umask is ours meanwhile.
local function create_private(name)
  os.remove(name)
  if not umask then
    local f, err = io.open(name, "wb")
    if f then os.execute("chmod 600 '" .. name:gsub("'", "'\\''") .. "'") end
    return f, err
  end
  local old = umask(tonumber("077", 8))
  local f, err = io.open(name, "wb")
  umask(old)
  return f, err
end

-- A temporary name of our own for each save: a name shared with another
-- writer (FILE.tmp) lets one rename the other's half-written file, or fail.
local saves = 0
local function temp_name()
  saves = saves + 1
  return string.format("%s.tmp.%d.%d", state_file, ngx.worker.pid(), saves)
end

-- Raises when the file cannot be written (the request answers 500), and
-- leaves no temporary file behind.
local function save()
  if not state_file then return end
  local list = {}
  for i, k in ipairs(db.order) do list[i] = db.records[k] end
  local text = json.encode({ version = 1, seq = db.seq, resources = json.array(list) })
  local tmp = temp_name()
  local f, err = create_private(tmp)
  if f then
    local wrote, werr = f:write(text, "\n")
    local closed, cerr = f:close()
    err = (not wrote and werr) or (not closed and cerr) or nil
  end
  if not err then
    local renamed, rerr = os.rename(tmp, state_file)
    err = not renamed and rerr or nil
  end
  if err then
    os.remove(tmp)
    error("cannot save the state file: " .. tostring(err), 0)
  end
end

-- load(path): read the state file (a missing file is an empty store). Raises
-- on a corrupt file, so a bad --state stops the launcher loudly.
function M.load(path)
  state_file = path
  db = { seq = 0, order = {}, records = {} }
  local f = path and io.open(path, "rb")
  if not f then return end
  local text = f:read("*a")
  f:close()
  local data, err = json.decode(text)
  if type(data) ~= "table" or type(data.resources) ~= "table" then
    error("state file " .. path .. " is not an emulator state: " .. tostring(err), 0)
  end
  db.seq = tonumber(data.seq) or 0
  for _, r in ipairs(data.resources) do
    local k = key(r.installation, r.id)
    db.order[#db.order + 1] = k
    db.records[k] = r
  end
end

-- Vercel's ids are opaque; a counter keeps ours unique, the random tail
-- keeps tests from guessing them.
local function new_internal_id()
  db.seq = db.seq + 1
  return string.format("res_%04d%06x", db.seq, math.random(0, 0xffffff))
end

function M.get(icfg, rid)
  return db.records[key(icfg, rid)]
end

-- Records of one installation, in the order they were first imported.
function M.list(icfg)
  local out = {}
  for _, k in ipairs(db.order) do
    local r = db.records[k]
    if r.installation == icfg then out[#out + 1] = r end
  end
  return out
end

-- Only the named secrets change; the others keep their place.
local function merge_secrets(old, new)
  local out, at = {}, {}
  for i, s in ipairs(old or {}) do out[i] = s; at[s.name] = i end
  for _, s in ipairs(new) do
    if at[s.name] then out[at[s.name]] = s
    else out[#out + 1] = s; at[s.name] = #out end
  end
  return json.array(out)
end

-- Import is an upsert that replaces every field, but keeps the internalId
-- and, when the body names no secrets, the secrets (they are managed by
-- their own endpoint; Vercel does not document this case).
function M.import(icfg, rid, body)
  local k = key(icfg, rid)
  local old = db.records[k]
  local r = { installation = icfg, id = rid,
              internalId = old and old.internalId or new_internal_id() }
  for _, f in ipairs(BODY_FIELDS) do r[f] = body[f] end
  r.secrets = body.secrets or (old and old.secrets)
  if not old then db.order[#db.order + 1] = k end
  db.records[k] = r
  save()
  return r
end

-- PATCH: fields present replace, fields absent stay. A string notification
-- clears it; secrets are an array (replace all) or {secrets, partial}.
function M.update(icfg, rid, body)
  local r = db.records[key(icfg, rid)]
  if not r then return nil end
  for _, f in ipairs(BODY_FIELDS) do
    if body[f] ~= nil then r[f] = body[f] end
  end
  if type(body.notification) == "string" then r.notification = nil end
  local s = body.secrets
  if s ~= nil then
    if s[1] ~= nil or s == json.empty_array then r.secrets = s
    elseif s.partial == true then r.secrets = merge_secrets(r.secrets, s.secrets)
    else r.secrets = s.secrets end
  end
  save()
  return r
end

-- PUT .../secrets: replace all, or with partial=true only the named ones.
function M.set_secrets(icfg, rid, secrets, partial)
  local r = db.records[key(icfg, rid)]
  if not r then return nil end
  r.secrets = partial and merge_secrets(r.secrets, secrets) or secrets
  save()
  return r
end

function M.delete(icfg, rid)
  local k = key(icfg, rid)
  if not db.records[k] then return false end
  db.records[k] = nil
  for i, o in ipairs(db.order) do
    if o == k then table.remove(db.order, i) break end
  end
  save()
  return true
end

function M.reset()
  db = { seq = db.seq, order = {}, records = {} }  -- seq goes on: ids stay unique
  save()
end

return M
