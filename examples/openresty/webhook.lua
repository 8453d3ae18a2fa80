--- A webhook for nginx: the partner's billing system reports a failed
-- payment, and the resource is marked `suspended` on Vercel.
--
--   POST /webhooks/payment-failed
--   X-Webhook-Secret: <WEBHOOK_SECRET>
--   {"resource_id": "db_1", "reason": "card declined"}
--
-- Answers 200 {"ok": true}, 400 (bad request), 401 (wrong secret), 404 (no
-- such resource on Vercel) or 502 (Vercel could not be reached, or failed).
-- The client yields while it waits for Vercel: the worker keeps serving.
local marketplace = require "vercel.marketplace"
local cjson = require "cjson.safe"

local M = {}

-- Made when init_by_lua requires this module, shared by every request.
-- Requests choose their transport when they run: cosockets in content_by_lua.
local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "", {
  token = os.getenv("VERCEL_TOKEN"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
  timeout = 10,
  retries = 2,
})
local secret = os.getenv("WEBHOOK_SECRET")

local function answer(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(value))
end

-- Compare digests, so the time taken says nothing about the secret.
local function authorized()
  local given = ngx.req.get_headers()["X-Webhook-Secret"]
  return secret ~= nil and type(given) == "string" and ngx.sha1_bin(given) == ngx.sha1_bin(secret)
end

-- The webhook's JSON body: resource_id (string) and an optional reason.
local function read_event()
  ngx.req.read_body()
  local event = cjson.decode(ngx.req.get_body_data() or "")
  if type(event) ~= "table" or type(event.resource_id) ~= "string" then return nil end
  if event.reason ~= nil and type(event.reason) ~= "string" then return nil end
  return event
end

function M.handle()
  if ngx.req.get_method() ~= "POST" then return answer(405, { error = "POST only" }) end
  if not authorized() then return answer(401, { error = "wrong or missing X-Webhook-Secret" }) end
  local event = read_event()
  if not event then return answer(400, { error = "expected {\"resource_id\": string, \"reason\"?: string}" }) end
  local out, err = inst:update(event.resource_id, {
    status = marketplace.status.suspended,
    notification = { level = "error", title = "Suspended: payment failed", message = event.reason },
  })
  if out then return answer(200, { ok = true }) end
  -- tostring(err) names the request and Vercel's request id, never the token.
  ngx.log(ngx.ERR, "suspending ", event.resource_id, ": ", tostring(err))
  if err.kind == "validation" then return answer(400, { error = err.message }) end
  if err.kind == "http" and err.status == 404 then return answer(404, { error = "no such resource" }) end
  return answer(502, { error = err.kind, request_id = err.request_id })
end

return M
