--- Import a partner's JSON export in one batch, and prove nothing was lost.
--
-- The export is a JSON array of Import bodies, each with the resource's `id`
-- (the format `vercel-marketplace sync` reads).  Every item is validated
-- first (one bad item refuses the whole file: nothing is sent), then all are
-- imported with `import_many`, then read back with `list` and compared field
-- by field: metadata values come back as they were exported (integers as
-- integers), so the import is lossless.
--
--    VERCEL_API_URL=http://127.0.0.1:8787 VERCEL_TOKEN=emulator-token \
--      lua5.4 examples/import_export.lua export.json     # or - for stdin
local marketplace = require "vercel.marketplace"

local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "icfg_demo", {
  token = assert(os.getenv("VERCEL_TOKEN"), "set VERCEL_TOKEN to the installation access token"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
})

local function fail(code, fmt, ...)
  io.stderr:write(fmt:format(...), "\n")
  os.exit(code)
end

-- 1. Read the export as the library reads answers: integers stay integers
-- on Lua 5.3+, and an empty array stays an array (plain cjson would send it
-- back as {}).
local path = arg[1] or fail(2, "usage: import_export.lua EXPORT.json (or - for stdin)")
local f = path == "-" and io.stdin or assert(io.open(path, "rb"))
local export = assert(marketplace.decode(f:read("*a")))
if f ~= io.stdin then f:close() end

-- 2. Validate every item before sending anything.
local items, bad = {}, 0
for i, record in ipairs(export) do
  local body = {}
  for k, v in pairs(record) do if k ~= "id" then body[k] = v end end
  local ok, err = marketplace.validate("import", body)
  if not ok then
    bad = bad + 1
    io.stderr:write(("item %d (%s): %s\n"):format(i, tostring(record.id), tostring(err)))
  end
  items[i] = { id = record.id, body = body }
end
if bad > 0 then fail(2, "%d invalid item(s); nothing was sent", bad) end

-- 3. One batch; results come back in input order.
local failed = 0
for i, r in ipairs(inst:import_many(items, { concurrency = 8 })) do
  if not r.ok then
    failed = failed + 1
    io.stderr:write(("failed %s: %s\n"):format(items[i].id, tostring(r.err)))
  end
end
print(("imported %d of %d"):format(#items - failed, #items))
if failed > 0 then os.exit(1) end

-- 4. Read everything back and compare: the proof that nothing was lost.
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    -- 5.3+: 7 and 7.0 are equal but not the same number.
    if math.type and type(a) == "number" and math.type(a) ~= math.type(b) then return false end
    return a == b
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local listed = {}
for _, r in ipairs(assert(inst:list())) do listed[r.partnerId] = r end
local differ = 0
for _, it in ipairs(items) do
  local got, want = listed[it.id], it.body
  local plan = want.billingPlan and want.billingPlan.id
  if not (got and got.name == want.name and got.productId == want.productId and got.status == want.status
      and same(want.metadata or {}, got.metadata or {}) and got.billingPlanId == plan) then
    differ = differ + 1
    io.stderr:write(("%s does not read back as exported\n"):format(it.id))
  end
end
if differ > 0 then fail(1, "%d resource(s) differ", differ) end
print(("verified %d: every resource reads back as exported"):format(#items))
inst:close()
