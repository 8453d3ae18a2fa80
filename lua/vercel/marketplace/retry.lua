--- When and how long to wait before trying a request again.
--
-- Shared by every transport (libcurl, nginx cosockets), so the policy is the
-- same wherever the client runs.  Retried: HTTP 429, 500, 502, 503, 504, and
-- connection failures; never another 4xx, a timeout, a TLS failure or a
-- response over the size limit.
-- @module vercel.marketplace.retry
local core = require "vercel.marketplace.core"

local M = {}

local RETRY_STATUS = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

--- May a failed attempt be tried again?
-- @tparam table err the error object of the attempt
-- @tparam boolean retryable what the transport said of a connection failure
function M.retryable(err, retryable)
  if err.kind == "http" then return RETRY_STATUS[err.status] == true end
  return err.kind == "transport" and retryable == true
end

--- How many requests one transport call sent: an answer's `meta.sent`, a
-- failure's `sent`; at least one, since a try that never reached the
-- server (a refused connection) still uses a retry.
function M.requests(status, meta, sent)
  local n = status and meta.sent or sent
  return (n and n > 1) and n or 1
end

--- Does this answer end the request, done?  A 2xx does; so does a 404 to a
-- DELETE sent again after a failed attempt: that attempt may have deleted
-- the resource before its answer was lost (a 502 from a gateway, a dropped
-- connection), and gone is what the caller asked for.
-- @param method the request's method
-- @param status the answer's status (nil: a transport failure)
-- @param attempt requests sent so far, this one included (a transport's own
--  resend on a fresh connection counts: see `requests`)
function M.done(method, status, attempt)
  if not status then return false end
  if status >= 200 and status < 300 then return true end
  return status == 404 and method == "DELETE" and attempt > 1
end

--- Seconds to wait before retry number `n` (1 for the first retry), or nil
-- when the server asks for a longer wait than `opts.max_retry_delay`: then we
-- give up and hand the caller the error, whose `retry_after` says how long.
--
-- Without a `Retry-After`: exponential backoff from `opts.retry_base` seconds,
-- doubled per retry and capped at `opts.max_retry_delay`, with "equal jitter"
-- (half fixed, half random) so that many clients do not retry in step; the
-- random half comes from the kernel (`core.random`), so processes forked
-- from one parent (nginx workers) do not draw the same waits.  A 429
-- without `Retry-After` waits at least one second, as Vercel advises: its step
-- is at least two, so the jittered wait is 1-2 s at first and still spread
-- (a `max_retry_delay` under a second wins over the floor).
function M.delay(n, err, opts)
  local after = err.retry_after
  if after then
    if after > opts.max_retry_delay then return nil end
    return after
  end
  local d = opts.retry_base * 2 ^ (n - 1)
  if err.status == 429 then d = math.max(d, 2) end
  d = math.min(opts.max_retry_delay, d)
  local wait = d / 2 + core.random() * d / 2
  if err.status == 429 then wait = math.max(wait, math.min(1, opts.max_retry_delay)) end
  return wait
end

return M
