--- Re-run only the failed items of a batch.
--
--    lua5.4 examples/resume_failed_batch.lua RESOURCES.json [RESULT.json]
--
-- RESOURCES.json is a sync file (a JSON array of Import bodies with an `id`).
-- Without RESULT.json the whole file is imported with `import_many` first;
-- with it (the output of `vercel-marketplace sync FILE --json`) only the
-- items that failed there are taken.  Then, for up to ROUNDS rounds, only
-- the items that failed are sent again, after the wait the API asked for.
-- Validation failures are not retried: they would fail again.
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"

local ROUNDS = 3
local MAX_WAIT = 30

local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "icfg_demo", {
  token = assert(os.getenv("VERCEL_TOKEN"), "set VERCEL_TOKEN to the installation access token"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
})

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local v = assert(marketplace.decode(f:read("*a"))) -- empty arrays and integers kept
  f:close()
  return v
end

local path, result_path = arg[1], arg[2]
if not path then
  io.stderr:write("usage: resume_failed_batch.lua RESOURCES.json [RESULT.json]\n")
  os.exit(2)
end

-- Every item of the file, as `{id, body}`.
local items, by_id = {}, {}
for i, record in ipairs(read_json(path)) do
  local body = {}
  for k, v in pairs(record) do if k ~= "id" then body[k] = v end end
  items[i] = { id = record.id, body = body }
  by_id[record.id] = items[i]
end

-- The items still to do: all of them, or those a previous run reported failed.
local todo = items
if result_path then
  todo = {}
  for _, failure in ipairs(read_json(result_path).failures or {}) do
    if failure.op == "import" and by_id[failure.id] then todo[#todo + 1] = by_id[failure.id] end
  end
  print(("resuming %d failed item(s) of %s"):format(#todo, result_path))
end

local invalid = 0

-- One round: the items that failed again, and how long the API asked to wait.
local function round(n, list)
  local again, wait, done = {}, 1, 0
  for i, r in ipairs(inst:import_many(list)) do
    if r.ok then
      done = done + 1
    elseif r.err.kind == "validation" then
      invalid = invalid + 1
      io.stderr:write(("%s is invalid, not retried: %s\n"):format(list[i].id, tostring(r.err)))
    else
      again[#again + 1] = list[i]
      wait = math.max(wait, r.err.retry_after or 0)
    end
  end
  print(("round %d: %d sent, %d imported, %d to retry"):format(n, #list, done, #again))
  return again, math.min(wait, MAX_WAIT)
end

local n = 0
while #todo > 0 and n < ROUNDS do
  n = n + 1
  local wait
  todo, wait = round(n, todo)
  if #todo > 0 and n < ROUNDS then core.sleep(wait) end
end
inst:close()
for _, it in ipairs(todo) do io.stderr:write("still failing: ", it.id, "\n") end
if #todo > 0 or invalid > 0 then os.exit(1) end
print("all done")
