--- Suspend a resource when its billing fails, and tell the user why.
--
-- A billing event (from the partner's own billing system) arrives as JSON:
--
--    {"type": "payment_failed", "resourceId": "db_1", "invoiceUrl": "https://..."}
--    {"type": "payment_succeeded", "resourceId": "db_1"}
--
-- A failed payment suspends the resource with an error notification linking
-- to the invoice; a payment that succeeds makes it ready again and clears the
-- notification (an Update with `notification = ""`).
--
--    lua5.4 examples/suspend_on_billing.lua event.json    # or - for stdin
local marketplace = require "vercel.marketplace"
local cjson = require "cjson"

local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "icfg_demo", {
  token = assert(os.getenv("VERCEL_TOKEN"), "set VERCEL_TOKEN to the installation access token"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
})

local path = assert(arg[1], "usage: suspend_on_billing.lua EVENT.json (or - for stdin)")
local f = path == "-" and io.stdin or assert(io.open(path, "rb"))
local event = cjson.decode(f:read("*a"))
if f ~= io.stdin then f:close() end

-- What each billing event changes.
local patches = {
  payment_failed = function(e)
    return {
      status = marketplace.status.suspended,
      notification = {
        level = marketplace.notification_level.error,
        title = "Payment failed: resource suspended",
        message = "Update your payment method to resume it.",
        href = e.invoiceUrl, -- must be http(s):// or sso:, checked before sending
      },
    }
  end,
  payment_succeeded = function()
    return { status = marketplace.status.ready, notification = "" }
  end,
}

local patch = patches[event.type]
if not patch then
  io.stderr:write("ignored event type ", tostring(event.type), "\n")
  os.exit(0)
end

local out, err = inst:update(event.resourceId, patch(event))
if not out then
  io.stderr:write("failed: ", tostring(err), "\n")
  os.exit(err.kind == "validation" and 2 or 1)
end
print(("%s: %s is now %s"):format(event.type, event.resourceId, patch(event).status))
inst:close()
