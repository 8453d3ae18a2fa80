--- The main example: the life of one resource, from import to delete.
--
-- Against the local emulator (what `make demo` does):
--
--    bin/vercel-marketplace-emulator --port 8787 --token emulator-token &
--    VERCEL_API_URL=http://127.0.0.1:8787 VERCEL_TOKEN=emulator-token lua5.4 examples/main.lua
--
-- Against Vercel: set VERCEL_TOKEN and VERCEL_INSTALLATION_ID, leave VERCEL_API_URL unset.
local marketplace = require "vercel.marketplace"

local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "icfg_demo", {
  token = assert(os.getenv("VERCEL_TOKEN"), "set VERCEL_TOKEN to the installation access token"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
  timeout = 10,
})

-- Stop on the first failure, printing the error (never the token or secrets).
local function check(value, err)
  if value == nil then
    io.stderr:write("failed: ", tostring(err), "\n")
    os.exit(1)
  end
  return value
end

-- 1. Import (upsert) a database the partner has just provisioned.
local out = check(inst:import("db_main", {
  productId = "postgres",
  name = "main-db",
  status = marketplace.status.ready,
  metadata = { region = "iad1", storageGb = 10 },
  billingPlan = {
    id = "plan_pro",
    type = marketplace.billing_plan_type.subscription,
    name = "Pro",
    cost = "$20/month",
    details = { { label = "Storage", value = "10 GB" } },
  },
  secrets = {
    { name = "URL", prefix = "POSTGRES", value = "postgres://main-db.internal:5432/app" },
  },
}))
print("imported:    " .. out.name)

-- 2. Update it: only the fields given change.
check(inst:update("db_main", {
  status = marketplace.status.suspended,
  notification = { level = marketplace.notification_level.warn, title = "Payment overdue" },
}))
print("updated:     status suspended, notification set")

-- 3. Read it back: a resource object with the API's fields and methods.
local res = check(inst:get("db_main"))
print(("read back:   %s (%s) status=%s internalId=%s"):format(res.id, res.name, res.status, res.internalId))

-- 4. Resource objects update themselves; refresh() re-reads them.
check(res:update({ status = marketplace.status.ready, notification = "" }))
check(res:refresh())
print("resumed:     status " .. res.status)

-- 5. Rotate one secret, keeping the others.
check(inst:update_secrets("db_main", { { name = "URL", prefix = "POSTGRES", value = "postgres://new-host:5432/app" } },
  { partial = true }))
print("secrets:     rotated")

-- 6. List the installation's resources.
for _, r in ipairs(check(inst:list())) do
  print(("listed:      %s %s %s"):format(r.partnerId, r.name, r.status))
end

-- 7. Delete it; a second read is a 404 error object.
check(inst:delete("db_main"))
local gone, err = inst:get("db_main")
assert(gone == nil and err.status == 404)
print("deleted:     get now answers " .. tostring(err))

-- Bad input never leaves the machine: every problem is listed by path.
local ok, verr = inst:import("db_bad", { name = 42, status = "on fire", zz = true })
assert(ok == nil and verr.kind == "validation")
print("refused:     " .. tostring(verr))
inst:close()
