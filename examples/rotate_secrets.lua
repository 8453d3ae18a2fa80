--- Rotate one secret of a resource and keep the others.
--
--    lua5.4 examples/rotate_secrets.lua RESOURCE_ID SECRET_NAME [PREFIX]
--
-- The new value is read from the NEW_SECRET_VALUE variable, or made up from
-- 32 random bytes.  `update_secrets` with `partial = true` overwrites only the
-- secret named; without it the call would replace them all.  The value is
-- never printed.
local marketplace = require "vercel.marketplace"

local inst = marketplace.installation(os.getenv("VERCEL_INSTALLATION_ID") or "icfg_demo", {
  token = assert(os.getenv("VERCEL_TOKEN"), "set VERCEL_TOKEN to the installation access token"),
  base_url = os.getenv("VERCEL_API_URL"), -- nil: https://api.vercel.com
})

local rid, name, prefix = arg[1], arg[2], arg[3]
if not (rid and name) then
  io.stderr:write("usage: rotate_secrets.lua RESOURCE_ID SECRET_NAME [PREFIX]\n")
  os.exit(2)
end

-- A fresh value: 32 bytes from the kernel, as hex.
local function random_value()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(32)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local value = os.getenv("NEW_SECRET_VALUE") or random_value()
local ok, err = inst:update_secrets(rid, { { name = name, prefix = prefix, value = value } }, { partial = true })
if not ok then
  io.stderr:write("failed: ", tostring(err), "\n")
  os.exit(err.kind == "validation" and 2 or 1)
end
print(("rotated %s%s of %s; the other secrets are unchanged"):format(prefix and (prefix .. "_") or "", name, rid))
inst:close()
