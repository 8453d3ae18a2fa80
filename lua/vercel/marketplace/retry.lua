--- When and how long to wait before trying a request again.
--
-- Shared by every transport (libcurl, nginx cosockets), so the policy is the
-- same wherever the client runs.  Retried: HTTP 429, 500, 502, 503, 504, and
-- connection failures; never another 4xx, a timeout, a TLS failure or a
-- response over the size limit.
-- @module vercel.marketplace.retry
local M = {}

local RETRY_STATUS = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

--- May a failed attempt be tried again?
-- @tparam table err the error object of the attempt
-- @tparam boolean retryable what the transport said of a connection failure
function M.retryable(err, retryable)
  if err.kind == "http" then return RETRY_STATUS[err.status] == true end
  return err.kind == "transport" and retryable == true
end

--- Seconds to wait before retry number `n` (1 for the first retry), or nil
-- when the server asks for a longer wait than `opts.max_retry_delay`: then we
-- give up and hand the caller the error, whose `retry_after` says how long.
--
-- Without a `Retry-After`: exponential backoff from `opts.retry_base` seconds,
-- doubled per retry and capped at `opts.max_retry_delay`, with "equal jitter"
-- (half fixed, half random) so that many clients do not retry in step.  A 429
-- without `Retry-After` waits at least one second, as Vercel advises.
function M.delay(n, err, opts)
  local after = err.retry_after
  if after then
    if after > opts.max_retry_delay then return nil end
    return after
  end
  local d = math.min(opts.max_retry_delay, opts.retry_base * 2 ^ (n - 1))
  if err.status == 429 then d = math.min(opts.max_retry_delay, math.max(d, 1)) end
  return d / 2 + math.random() * d / 2
end

return M
