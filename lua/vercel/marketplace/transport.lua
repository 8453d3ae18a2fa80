--- Which transport carries the requests of an installation.
--
-- `open(settings)` returns a session, whose `perform(method, url, body)`
-- answers `status, body, meta` or `nil, kind, message, retryable` (see
-- csrc/transport.c), and the `sleep(seconds)` the retry loop waits with.
-- @module vercel.marketplace.transport
local core = require "vercel.marketplace.core"

local M = {}

--- Open a session for `settings` (token, timeout, connect_timeout,
-- max_response_size, ca_file, ca_path, user_agent).
function M.open(settings)
  return core.session(settings), core.sleep
end

return M
