--- Batches: many imports, updates or deletes of one installation at once.
--
-- Up to `concurrency` requests are in flight over one libcurl multi handle
-- (`core.multi`, csrc/multi.c), multiplexed over HTTP/2 when the server
-- offers it.  Each item is prepared exactly as a single call would be
-- (`Installation:_prepare`), so an invalid one is reported without being
-- sent and never stops the others; answers are read with
-- `vercel.marketplace.response` and failures retried per item with
-- `vercel.marketplace.retry` and the installation's options.  A 429 pauses
-- the whole batch: nothing new starts before its `Retry-After` has passed.
--
-- The C side only moves bytes: this file decides what to start, when to
-- wait and what to retry, and calls `on_progress` between multi steps (never
-- from inside libcurl).  Inside nginx, where a request may yield, the same
-- run is shared by `concurrency` light threads (`ngx.thread`), each sending
-- over its own cosocket: same results, same retries, same 429 pause.
--
-- A batch that cannot finish -- `on_progress` raised, or a SIGINT came while
-- `core.trap_interrupt` was on -- raises an error object (kind `callback`
-- or `interrupted`) that says what became of every item: `results[i]` with
-- `state` "done", "failed", "in_flight" (sent, outcome unknown) or
-- "not_started", and `counts` of each, so a caller can resume.
-- @module vercel.marketplace.batch
local core = require "vercel.marketplace.core"
local errors = require "vercel.marketplace.error"
local response = require "vercel.marketplace.response"
local retry = require "vercel.marketplace.retry"
local transport = require "vercel.marketplace.transport"

local ngx = ngx -- luacheck: ignore (nil outside nginx: the threads path is then never taken)

local M = {}

M.DEFAULT_CONCURRENCY = 8
M.MAX_CONCURRENCY = 256 -- the C multi handle's limit too
local MAX_POLL = 1 -- seconds one poll may block; transfers wake it sooner

local OPTIONS = { concurrency = true, on_progress = true }

-- Arguments --------------------------------------------------------------

-- Misuse raises, pointing at the caller of import_many & co (level 3:
-- the public method tail-calls run, which calls us).
local function misuse(fname, fmt, ...)
  error(("bad argument %s to '%s'"):format(fmt:format(...), fname), 3)
end

-- The number of items.  Keys 1..n and nothing else: `#` of a table with
-- holes differs between interpreters (and runs), so holes are refused on
-- every one, as the body validator refuses them.
local function check_items(fname, items)
  if type(items) ~= "table" then misuse(fname, "#1 (table expected, got %s)", type(items)) end
  local n, count = 0, 0
  for k in pairs(items) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      misuse(fname, "#1 (array of items expected, found key %s)", tostring(k))
    end
    if k > n then n = k end
    count = count + 1
  end
  if count ~= n then
    for i = 1, n do
      if items[i] == nil then misuse(fname, "#1 (array of items expected, item %d is nil)", i) end
    end
  end
  return n
end

local function check_opts(fname, opts)
  if opts == nil then return M.DEFAULT_CONCURRENCY, nil end
  if type(opts) ~= "table" then misuse(fname, "#2 (table expected, got %s)", type(opts)) end
  for k in pairs(opts) do
    if not OPTIONS[k] then misuse(fname, "#2 (unknown option '%s')", tostring(k)) end
  end
  local c = opts.concurrency
  if c == nil then c = M.DEFAULT_CONCURRENCY end
  if type(c) ~= "number" or c % 1 ~= 0 or c < 1 or c > M.MAX_CONCURRENCY then
    misuse(fname, "#2 (option 'concurrency' must be a whole number from 1 to %d)", M.MAX_CONCURRENCY)
  end
  local p = opts.on_progress
  if p ~= nil and type(p) ~= "function" then
    misuse(fname, "#2 (option 'on_progress' must be a function)")
  end
  return c, p
end

-- Items ------------------------------------------------------------------

local function invalid(path, message)
  return errors.new("validation", "invalid batch item; nothing was sent",
    { errors = { { path = path, message = message } } })
end

-- id, body of an item, or nil and a validation error.  What a single call
-- would refuse by raising (a non-string id, a non-table body) is an item's
-- error here: one bad item must not cost the others their answers.
local function parts(op, item)
  if op == "delete" and type(item) == "string" then return item end
  if type(item) ~= "table" then
    return nil, invalid("", ("expected %s, got %s"):format(op == "delete" and "table or id string" or "table", type(item)))
  end
  if type(item.id) ~= "string" then return nil, invalid("id", "expected string, got " .. type(item.id)) end
  if op ~= "delete" and type(item.body) ~= "table" then
    return nil, invalid("body", "expected table, got " .. type(item.body))
  end
  return item.id, item.body
end

-- A request ready to go: {i, method, url, json, body, attempt}, or nil, err
-- (the body is kept for the secrets an error must not quote).  `attempt`
-- counts the requests that left for it (`retry.requests`).
local function prepare(inst, op, i, item)
  local id, body = parts(op, item)
  if not id then return nil, body end
  local method, url, json = inst:_prepare(op, id, body)
  if not method then return nil, url end
  return { i = i, method = method, url = url, json = json, body = body, attempt = 0 }
end

-- One batch run ----------------------------------------------------------

local Run = {}
Run.__index = Run

-- Raised inside a run to stop it; `stopped` turns it into the error object.
local Stop = {}
Stop.__index = Stop

local function stop(kind, cause)
  error(setmetatable({ kind = kind, cause = cause }, Stop), 0)
end

-- Item i is finished: store its result, tell the caller.  A callback that
-- raises stops the batch.
function Run:settle(i, ok, v)
  self.results[i] = ok and { ok = true, value = v } or { ok = false, err = v }
  self.done = self.done + 1
  if self.progress then
    local pok, why = pcall(self.progress, self.done, self.total)
    if not pok then stop("callback", why) end
  end
end

-- Item i is about to be sent: from now on, were the batch to stop, its
-- outcome is unknown unless it settles.
function Run:sending(req)
  if core.interrupted() then stop("interrupted") end
  self.sent[req.i] = true
end

local ABORTED = {
  in_flight = "the batch stopped while this item was sent; its outcome is unknown",
  not_started = "the batch stopped before this item was sent",
}

-- The error a stopped batch raises: every item's state, in input order.
function Run:stopped(s)
  local results, counts = {}, { done = 0, failed = 0, in_flight = 0, not_started = 0 }
  for i = 1, self.total do
    local r = self.results[i]
    local state = r and (r.ok and "done" or "failed") or (self.sent[i] and "in_flight" or "not_started")
    if not r then r = { ok = false, err = errors.new("aborted", ABORTED[state]) } end
    r.state = state
    results[i], counts[state] = r, counts[state] + 1
  end
  local why = s.kind == "callback" and ("on_progress raised an error (" .. tostring(s.cause) .. ")")
      or "interrupted by SIGINT"
  local message = ("%s; the batch stopped: %d done, %d failed, %d in flight (outcome unknown), %d not started")
      :format(why, counts.done, counts.failed, counts.in_flight, counts.not_started)
  return errors.new(s.kind, message, { cause = s.cause, results = results, counts = counts })
end

-- Re-raise what stopped a run: our own stop as the error object above,
-- anything else (a bug, misuse) as it was.
function Run:raise(err)
  if getmetatable(err) == Stop then err = self:stopped(err) end
  error(err, 0)
end

-- The value of a 2xx answer, or its decode error.
function Run:succeeded(req, status, body, meta)
  local v, err = self.inst:_value(self.answer, status, body, meta, req.method, req.url, req.attempt, req.body)
  if v == nil then return self:settle(req.i, false, err) end
  self:settle(req.i, true, v)
end

-- A failed attempt: settle it and return nil, or return when to try it
-- again.  A 429 pauses the whole batch until the wait it asked for has
-- passed.  A transfer a SIGINT ended stops the batch, the item in flight.
function Run:failed(req, status, body, meta, retryable)
  if not status and body == "interrupted" then stop("interrupted") end
  local err = response.failure(status, body, meta, req.body, self.inst._session)
  err.method, err.path, err.attempts = req.method, self.inst:_path(req.url), req.attempt
  local wait = req.attempt <= self.opts.retries and retry.retryable(err, retryable)
      and retry.delay(req.attempt, err, self.opts)
  if not wait then return self:settle(req.i, false, err) end
  local at = core.now() + wait
  if err.status == 429 then
    if at > self.pause_until then self.pause_until = at end
    at = self.pause_until
  end
  return at
end

-- The first queued retry that is due, if any.
function Run:due(now)
  local w = self.waiting
  for k = 1, #w do
    if w[k].at <= now then return table.remove(w, k) end
  end
end

-- The next new item that passes validation; invalid ones are settled on
-- the way, unsent.
function Run:fresh()
  while self.next <= self.total do
    local i = self.next
    self.next = i + 1
    local req, err = prepare(self.inst, self.op, i, self.items[i])
    if req then return req end
    self:settle(i, false, err)
  end
end

-- When the next queued retry (or the end of a pause) is due.
function Run:next_due()
  local t = math.huge
  for _, req in ipairs(self.waiting) do
    if req.at < t then t = req.at end
  end
  return t
end

-- The next request to start: a queued retry that is due, else a new item;
-- nil while a pause holds or when there is none.  The clock is read only
-- once a retry or a pause exists.
function Run:next_request()
  if self.pause_until > 0 or self.waiting[1] then
    local now = core.now()
    if now < self.pause_until then return nil end
    local req = self:due(now)
    if req then return req end
  end
  return self:fresh()
end

-- Start requests while a slot is free, no pause holds and work is there.
function Run:fill()
  local m, free, slots = self.multi, self.free, self.slots
  local nfree = #free
  while nfree > 0 do
    local req = self:next_request()
    if not req then return end
    local slot = free[nfree]
    free[nfree], nfree = nil, nfree - 1
    self:sending(req)
    if self.log then req.started = core.now() end
    slots[slot] = req
    m:start(slot, req.method, req.url, req.json, self.opts.retries + 1 - req.attempt)
  end
end

-- The answer in `slot` (its transfer ended): log it, then settle or retry.
function Run:finish(slot)
  local req = self.slots[slot]
  self.slots[slot] = nil
  self.free[#self.free + 1] = slot
  local status, body, meta, retryable, sent = self.multi:result(slot)
  req.attempt = req.attempt + retry.requests(status, meta, sent)
  if req.started then -- the installation's `log` option: one line per attempt
    self.inst:_log_attempt(req.method, req.url, req.attempt, req.started, status, body, meta, req.body)
  end
  if retry.done(req.method, status, req.attempt) then return self:succeeded(req, status, body, meta) end
  req.at = self:failed(req, status, body, meta, retryable)
  if req.at then self.waiting[#self.waiting + 1] = req end
end

-- How long a poll may block: until a queued retry is due, if a slot is free.
function Run:poll_wait()
  if #self.free == 0 then return MAX_POLL end
  local d = math.max(self.pause_until, self:next_due()) - core.now()
  return math.max(0, math.min(MAX_POLL, d))
end

function Run:step()
  self:fill()
  -- fill may settle the last items itself (invalid ones): then nothing is
  -- in flight and nothing waits, and there is nothing to sleep for.
  if self.done == self.total then return end
  if #self.free == self.n then -- nothing in flight: wait for the next retry
    local d = math.max(self.pause_until, self:next_due()) - core.now()
    if d > 0 then self.sleep(d) end
    return
  end
  local done, k = self.multi:poll(self:poll_wait(), self.done_slots)
  for j = 1, k do self:finish(done[j]) end
end

function Run:concurrent()
  while self.done < self.total do
    self:step()
    if core.interrupted() then stop("interrupted") end
  end
end

-- The multi path: `session` is the libcurl session to copy settings from.
-- The multi handle is closed however the run ends (an error raised by
-- on_progress included), so no transfer outlives it.
function Run:over_multi(session, n)
  self.n = n
  for slot = n, 1, -1 do self.free[#self.free + 1] = slot end
  self.multi = core.multi(session, n)
  local ok, err = pcall(Run.concurrent, self)
  self.multi:close()
  if not ok then self:raise(err) end
end

-- Light threads (inside nginx) ----------------------------------------------

local WAIT_SLICE = 0.1 -- seconds a waiting thread sleeps before looking again

-- Sleep until `at` (core.now() seconds), or with no `at` until the pause
-- is over: another thread's 429 may extend it meanwhile, and another
-- thread may stop the batch (on_progress raised), hence short slices.
function Run:wait(at)
  local wait = (at or self.pause_until) - core.now()
  -- bounded: a pause grows by at most max_retry_delay at a time
  for _ = 1, math.ceil((math.max(0, wait) + self.opts.max_retry_delay) / WAIT_SLICE) + 10 do
    if self.aborted then return end
    local d = (at or self.pause_until) - core.now()
    if d <= 0 then return end
    self.sleep(math.min(d, WAIT_SLICE))
  end
end

-- Attempts of one item until it settles.  Before each, the thread waits out
-- any pause a 429 (this item's or another's) has set.
function Run:attempts(req)
  local session, inst = self.inst._session, self.inst
  while req.attempt <= self.opts.retries do
    self:wait()
    if self.aborted then return end
    self:sending(req)
    local started = self.log and core.now()
    local status, body, meta, retryable, sent = session:perform(req.method, req.url, req.json,
      self.opts.retries + 1 - req.attempt)
    req.attempt = req.attempt + retry.requests(status, meta, sent)
    if started then inst:_log_attempt(req.method, req.url, req.attempt, started, status, body, meta, req.body) end
    if self.aborted then return end -- the batch raised while this was in flight
    if retry.done(req.method, status, req.attempt) then return self:succeeded(req, status, body, meta) end
    local at = self:failed(req, status, body, meta, retryable)
    if not at then return end
    self:wait(at)
  end
end

-- One light thread: items one after another until none is left.  An error
-- (from on_progress) stops every thread before its next attempt.
function Run:worker()
  local ok, err = pcall(function()
    while not self.aborted do
      local req = self:fresh()
      if not req then return end
      self:attempts(req)
    end
  end)
  if not ok and not self.aborted then self.aborted = { err } end
end

function Run:over_threads(n)
  local threads = {}
  for k = 1, n do threads[k] = ngx.thread.spawn(Run.worker, self) end
  for k = 1, n do ngx.thread.wait(threads[k]) end
  if self.aborted then self:raise(self.aborted[1]) end
end

--- Run a batch: `op` is "import", "update" or "delete".
-- @return an array of results in input order, one per item:
--  `{ok = true, value = ...}` or `{ok = false, err = ...}`
function M.run(inst, op, items, opts)
  local fname = op .. "_many"
  local total = check_items(fname, items)
  local n, progress = check_opts(fname, opts)
  local self = setmetatable({
    inst = inst, op = op, items = items, total = total, results = {}, done = 0, next = 1,
    opts = inst._opts, answer = require("vercel.marketplace")._OPS[op].answer,
    progress = progress, sleep = inst._sleep, log = inst._log ~= nil and inst._log_attempt ~= nil,
    waiting = {}, pause_until = 0, slots = {}, free = {}, done_slots = {}, sent = {},
  }, Run)
  if total == 0 then return self.results end
  local how, session = transport.batch_mode(inst._session)
  if how == "threads" then self:over_threads(math.min(n, total)) else self:over_multi(session, math.min(n, total)) end
  return self.results
end

return M
