-- The request log: every API request as received, so tests can check what
-- the client really sent (headers, exact body, path encoding, which
-- connection). Control requests are not logged; only the last LIMIT stay.
-- The Authorization header is kept redacted (init.lua): "Bearer [token]",
-- "Bearer [other token]" or "[redacted]", never its value.
local M = {}

local LIMIT = 1000
local entries = {}

function M.record(entry)
  entries[#entries + 1] = entry
  if #entries > LIMIT then table.remove(entries, 1) end
end

function M.list() return entries end

function M.clear() entries = {} end

return M
