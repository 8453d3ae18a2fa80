-- Batches: import_many, update_many, delete_many over libcurl's multi
-- interface, against the emulator.  Every item gets exactly one result, in
-- input order, however the server misbehaves; invalid items are refused
-- unsent; a 429 pauses the whole batch.  No speed is asserted anywhere.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"
local errors = require "vercel.marketplace.error"

local function body(i)
  return { productId = "p", name = "n" .. i, status = "ready" }
end

local function items(n, prefix)
  local t = {}
  for i = 1, n do t[i] = { id = (prefix or "db_") .. i, body = body(i) } end
  return t
end

local function count(reqs, method)
  local n = 0
  for _, r in ipairs(reqs) do
    if r.method == method then n = n + 1 end
  end
  return n
end

describe("batches", function()
  local emu = helper.use_emulator({ token = "test-token" })

  local function inst(opts)
    local o = { token = "test-token", base_url = emu.url, retry_base = 0.01 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return marketplace.installation("icfg_1", o)
  end

  local function assert_all_ok(results, n)
    assert.equals(n, #results)
    for i = 1, n do
      assert.is_true(results[i].ok, "item " .. i .. ": " .. tostring(results[i].err))
    end
  end

  it("imports 200 resources, results in input order", function()
    local c = inst()
    local results = c:import_many(items(200))
    assert_all_ok(results, 200)
    for i = 1, 200 do assert.equals("n" .. i, results[i].value.name) end
    assert.equals(200, #assert(c:list()))
    assert.equals(200, count(emu:requests(), "PUT"))
    assert.equals("n77", emu:record("icfg_1", "db_77").name)
    c:close()
  end)

  it("refuses invalid items unsent, as single calls would, and sends the valid ones", function()
    local c = inst()
    local list = {
      { id = "ok_1", body = body(1) },
      { id = "bad_body", body = { productId = "p", name = "n" } },       -- no status
      { id = "", body = body(3) },                                          -- empty id
      { id = 42, body = body(4) },                                          -- not a string
      { id = "no_body" },                                                   -- no body
      "not an item",
      { id = "ok_7", body = body(7) },
    }
    local results = c:import_many(list)
    assert.equals(#list, #results)
    assert.is_true(results[1].ok)
    assert.is_true(results[7].ok)
    for i = 2, 6 do
      assert.is_false(results[i].ok)
      assert.equals("validation", results[i].err.kind)
    end
    local _, single = c:import("bad_body", { productId = "p", name = "n" })
    assert.same(single.errors, results[2].err.errors)
    assert.equals(tostring(single), tostring(results[2].err))
    local reqs = emu:requests()
    assert.equals(2, #reqs)
    assert.equals("/v1/installations/icfg_1/resources/ok_1", reqs[1].path)
    assert.equals("/v1/installations/icfg_1/resources/ok_7", reqs[2].path)
    c:close()
  end)

  it("retries a 5xx burst and dropped connections, accounting for every item", function()
    -- Every request that leaves counts against retries: libcurl's own resends
    -- after a drop, and those on a kept-alive connection nginx had closed
    -- meanwhile (which never reach it).  A budget well above the 16 faults
    -- lets every item land however they fall.
    local c = inst({ retries = 40 })
    emu:control("POST", "/_emulator/faults", { method = "PUT", status = 503, count = 10 })
    emu:control("POST", "/_emulator/faults", { method = "PUT", action = "drop", count = 6 })
    local results = c:import_many(items(60))
    assert_all_ok(results, 60)
    assert.equals(60 + 16, count(emu:requests(), "PUT"))
    assert.equals(60, #assert(c:list()))
    c:close()
  end)

  it("reports an item that keeps failing, with its attempts, without stopping the others", function()
    local c = inst({ retries = 2 })
    emu:control("POST", "/_emulator/faults", { path = ".*/db_5", status = 500, count = 10 })
    local results = c:import_many(items(12))
    for i = 1, 12 do
      if i == 5 then
        assert.is_false(results[i].ok)
        assert.equals("http", results[i].err.kind)
        assert.equals(500, results[i].err.status)
        assert.equals(3, results[i].err.attempts)
        assert.equals("PUT", results[i].err.method)
        assert.equals("/v1/installations/icfg_1/resources/db_5", results[i].err.path)
      else
        assert.is_true(results[i].ok)
      end
    end
    c:close()
  end)

  it("gives every item a transport error when nothing answers", function()
    local c = marketplace.installation("icfg_1", { token = "test-token", retries = 0,
      base_url = "http://127.0.0.1:" .. helper.closed_port() })
    local results = c:import_many(items(5))
    assert.equals(5, #results)
    for i = 1, 5 do
      assert.is_false(results[i].ok)
      assert.equals("transport", results[i].err.kind)
      assert.equals(1, results[i].err.attempts)
    end
    c:close()
  end)

  it("pauses the whole batch on 429 and still lands everything", function()
    local c = inst({ retries = 4 })
    local status = emu:control("POST", "/_emulator/rate-limit", { limit = 15, window = 1 })
    assert.equals(201, status)
    local t0 = core.now()
    local results = c:import_many(items(45))
    assert_all_ok(results, 45)
    local elapsed = core.now() - t0
    emu:control("DELETE", "/_emulator/rate-limit")
    assert.equals(45, #assert(c:list()))
    -- Within each window at most the 8 requests in flight when the limit
    -- ran out see a 429: nothing new starts during a pause.  45 items at
    -- 15 per window take about three windows.
    local puts = count(emu:requests(), "PUT")
    assert.is_true(puts >= 45 + 1, "expected some 429s, saw " .. puts .. " requests")
    assert.is_true(puts <= 45 + 8 * 4, "too many requests during pauses: " .. puts)
    -- Not a speed figure: the windows themselves (2 pauses of ~1 s) force it.
    assert.is_true(elapsed >= 1.5, "the batch did not wait for Retry-After")
    c:close()
  end)

  it("calls on_progress after each item with (done, total)", function()
    local c = inst()
    local seen = {}
    local list = items(20)
    list[3].body = {}                                                       -- invalid
    local results = c:import_many(list, { on_progress = function(done, total)
      seen[#seen + 1] = { done, total }
    end })
    assert.equals(20, #results)
    assert.equals(20, #seen)
    for k, s in ipairs(seen) do assert.same({ k, 20 }, s) end
    c:close()
  end)

  it("lets an error raised by on_progress out, and the installation keeps working", function()
    local c = inst()
    local ok, e = pcall(c.import_many, c, items(10), { on_progress = function(done)
      if done == 2 then error("stop here", 0) end
    end })
    assert.is_false(ok)
    assert.is_true(errors.is(e))
    assert.equals("callback", e.kind)
    assert.equals("stop here", e.cause)
    assert.matches("on_progress raised an error %(stop here%); the batch stopped", tostring(e))
    assert.truthy(c:import("after", body(1)))
    c:close()
  end)

  it("goes on when on_progress closes the installation: the batch's handle is its own", function()
    local c = inst()
    emu:control("POST", "/_emulator/faults", { method = "PUT", path = ".*/db_[5-9]", status = 404, count = 50 })
    local closed = false
    local results = c:import_many(items(9), { concurrency = 1, on_progress = function(done)
      if done == 2 and not closed then closed = true; c:close() end
    end })
    assert.equals(9, #results)
    for i = 1, 9 do
      if i <= 4 then assert.is_true(results[i].ok, i) else assert.equals(404, results[i].err.status, i) end
    end
  end)

  it("stops when on_progress raises, saying what became of every item", function()
    local c = inst()
    -- db_2..db_4 answer slowly: in flight when the first answer comes.
    emu:control("POST", "/_emulator/faults", { method = "PUT", path = "/v1/installations/icfg_1/resources/db_[2-4]",
      delay = 1, count = 3 })
    local ok, e = pcall(c.import_many, c, items(20), { concurrency = 4, on_progress = function()
      error({ reason = "enough" })
    end })
    assert.is_false(ok)
    assert.equals("callback", e.kind)
    assert.same({ reason = "enough" }, e.cause)
    assert.same({ done = 1, failed = 0, in_flight = 3, not_started = 16 }, e.counts)
    assert.equals(20, #e.results)
    for i, r in ipairs(e.results) do
      local want = i == 1 and "done" or i <= 4 and "in_flight" or "not_started"
      assert.equals(want, r.state, i)
      if want == "done" then
        assert.is_true(r.ok)
        assert.equals("n" .. i, r.value.name)
      else
        assert.is_false(r.ok)
        assert.equals("aborted", r.err.kind)
      end
    end
    assert.matches("the batch stopped: 1 done, 0 failed, 3 in flight %(outcome unknown%), 16 not started", tostring(e))
    c:close()
  end)

  it("refuses items with holes on every interpreter", function()
    local c = inst()
    local list = items(4)
    list[2], list[4] = nil, nil
    assert.has_error(function() c:import_many(list) end)
    local ok, why = pcall(c.import_many, c, { items(1)[1], nil, items(3)[3] })
    assert.is_false(ok)
    assert.matches("item 2 is nil", why)
    assert.equals(0, #emu:requests())
    c:close()
  end)

  it("updates and deletes many", function()
    local c = inst()
    assert_all_ok(c:import_many(items(6)), 6)
    local patches = {}
    for i = 1, 6 do patches[i] = { id = "db_" .. i, body = { name = "renamed" .. i } } end
    local updated = c:update_many(patches)
    assert_all_ok(updated, 6)
    assert.equals("renamed4", updated[4].value.name)
    assert.equals("renamed4", emu:record("icfg_1", "db_4").name)
    local deleted = c:delete_many({ "db_1", { id = "db_2" }, "db_3", { id = "db_4" }, "db_5", "db_6", "missing" })
    assert.equals(7, #deleted)
    for i = 1, 6 do assert.same({ ok = true, value = true }, deleted[i]) end
    assert.is_false(deleted[7].ok)
    assert.equals(404, deleted[7].err.status)
    assert.same({}, assert(c:list()))
    assert.equals(7, count(emu:requests(), "DELETE"))
    c:close()
  end)

  it("counts a DELETE answered 404 after a failed attempt as deleted", function()
    local c = inst()
    assert_all_ok(c:import_many(items(1)), 1)
    -- db_9's first attempt fails: it might have deleted it, so the 404 of
    -- the retry is done.  db_8 answers 404 at once: it was never there.
    emu:control("POST", "/_emulator/faults", { method = "DELETE", path = ".*/db_9", status = 502 })
    local results = c:delete_many({ "db_1", "db_8", "db_9" })
    assert.is_true(results[1].ok)
    assert.is_false(results[2].ok)
    assert.equals(404, results[2].err.status)
    assert.is_true(results[3].ok)
    assert.is_true(results[3].value)
    assert.equals(4, count(emu:requests(), "DELETE"))
    c:close()
  end)

  it("keeps several requests in flight at once", function()
    local c = inst()
    emu:control("POST", "/_emulator/faults", { method = "PUT", delay = 0.3, count = 8 })
    assert_all_ok(c:import_many(items(8), { concurrency = 8 }), 8)
    local conns = {}
    for _, r in ipairs(emu:requests()) do conns[r.connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.is_true(n > 1, "all requests came over one connection")
    c:close()
  end)

  -- Over plain HTTP no connection can multiplex, so nothing waits to find
  -- out: a slow first answer must not hold the rest of the wave back (it
  -- used to, until their timeout, and they failed unsent).
  it("does not hold the other requests back behind a slow first answer", function()
    local c = inst({ timeout = 1 })
    emu:control("POST", "/_emulator/faults", { path = ".*/db_1$", delay = 2, count = 1 })
    local results = c:import_many(items(8), { concurrency = 8 })
    assert.is_false(results[1].ok)
    assert.equals("timeout", results[1].err.kind)
    for i = 2, 8 do assert.is_true(results[i].ok, "item " .. i .. ": " .. tostring(results[i].err)) end
    assert.equals(8, count(emu:requests(), "PUT"))
    c:close()
  end)

  -- Once every slot is free again, the next fill may find only invalid items
  -- left and settle them: the batch is then over, with nothing to wait for.
  -- (It used to sleep for ever; a subprocess keeps the spec bounded.)
  it("ends when the last items are invalid and settle after every answer came", function()
    local ok, out = helper.run_lua(([[
      local m = require "vercel.marketplace"
      local inst = m.installation("icfg_1", { token = "test-token", base_url = %q })
      local r = inst:import_many({ { id = "ok_1", body = { productId = "p", name = "n", status = "ready" } },
        { id = "bad", body = { name = "n" } } }, { concurrency = 1 })
      print(#r, r[1].ok, r[2].ok)
    ]]):format(emu.url))
    assert.is_true(ok, out)
    assert.equals("2\ttrue\tfalse\n", out)
  end)

  it("sends one at a time with concurrency = 1", function()
    local c = inst()
    assert_all_ok(c:import_many(items(5), { concurrency = 1 }), 5)
    local reqs = emu:requests()
    for i = 2, #reqs do assert.equals(reqs[1].connection, reqs[i].connection) end
    c:close()
  end)

  it("returns an empty array for no items", function()
    local c = inst()
    assert.same({}, c:import_many({}))
    assert.equals(0, #emu:requests())
    c:close()
  end)

  it("raises on a wrong argument", function()
    local c = inst()
    assert.has_error(function() c:import_many("x") end)
    assert.has_error(function() c:import_many({ a = 1 }) end)
    assert.has_error(function() c:import_many({}, 5) end)
    assert.has_error(function() c:import_many({}, { concurrency = 0 }) end)
    assert.has_error(function() c:import_many({}, { concurrency = 2.5 }) end)
    assert.has_error(function() c:import_many({}, { on_progress = 1 }) end)
    assert.has_error(function() c:delete_many({}, { speed = 1 }) end)
    local ok, msg = pcall(c.update_many, c, nil)
    assert.is_false(ok)
    assert.matches("update_many", msg)
    c:close()
  end)

  describe("multi handle", function()
    it("closes once, however many times it is closed", function()
      local c = inst()
      local m = core.multi(c._session, 2)
      assert.matches("open", tostring(m))
      m:close()
      m:close()
      assert.matches("closed", tostring(m))
      assert.has_error(function() m:poll(0) end, "attempt to use a closed batch")
      c:close()
    end)

    it("refuses a closed session, a bad slot count and a busy slot", function()
      local c = inst()
      assert.has_error(function() core.multi(c._session, 0) end)
      assert.has_error(function() core.multi({}, 2) end)
      local m = core.multi(c._session, 1)
      m:start(1, "GET", emu.url .. "/v1/installations/icfg_1/resources")
      assert.has_error(function() m:start(1, "GET", emu.url) end)
      assert.has_error(function() m:result(1) end)
      m:close()
      c:close()
      assert.has_error(function() core.multi(c._session, 1) end)
    end)

    it("answers like session:perform", function()
      local c = inst()
      local m = core.multi(c._session, 1)
      local url = emu.url .. "/v1/installations/icfg_1/resources/x"
      m:start(1, "PUT", url, core.encode("import", body(1)))
      local done, k
      for _ = 1, 100 do
        done, k = m:poll(0.1)
        if k > 0 then break end
      end
      assert.same({ 1 }, done)
      assert.equals(1, k)
      local status, text, meta = m:result(1)
      assert.equals(200, status)
      assert.equals("n1", require("cjson").decode(text).name)
      assert.truthy(meta.request_id)
      m:close()
      c:close()
    end)

    it("reports finished slots in the caller's array, with their count", function()
      local c = inst()
      local m = core.multi(c._session, 2)
      local t = { 7, 7, 7 } -- left over from an earlier poll
      m:start(1, "GET", emu.url .. "/v1/installations/icfg_1/resources")
      m:start(2, "GET", emu.url .. "/v1/installations/icfg_1/resources")
      local seen, k = {}, 0
      for _ = 1, 100 do
        local done, n = m:poll(0.1, t)
        assert.equals(t, done)
        assert.is_nil(done[n + 1])
        for j = 1, n do seen[#seen + 1] = done[j] end
        k = k + n
        if k == 2 then break end
      end
      table.sort(seen)
      assert.same({ 1, 2 }, seen)
      assert.has_error(function() m:poll(0, "not a table") end)
      m:close()
      c:close()
    end)

    it("is collected when dropped mid-transfer", function()
      local c = inst()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local m = core.multi(c._session, 2)
        m:start(1, "GET", emu.url .. "/v1/installations/icfg_1/resources")
        m:poll(0)
        weak[1] = m
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      c:close()
    end)
  end)

  -- api.vercel.com offers HTTP/2, and so does the emulator over HTTPS: a
  -- batch then shares one connection, its requests multiplexed as streams.
  describe("over HTTP/2", function()
    local tls = helper.use_emulator({ token = "test-token", tls = true })

    local function h2_inst(opts)
      local o = { token = "test-token", base_url = tls.https_url, ca_file = tls.certificate.cert,
                  retry_base = 0.01 }
      for k, v in pairs(opts or {}) do o[k] = v end
      return marketplace.installation("icfg_1", o)
    end

    -- The connections the requests came over, and whether all were HTTP/2.
    local function connections()
      local seen, n, all_h2 = {}, 0, true
      for _, r in ipairs(tls:requests()) do
        if not seen[r.connection] then seen[r.connection], n = true, n + 1 end
        all_h2 = all_h2 and r.protocol == "HTTP/2.0"
      end
      return n, all_h2
    end

    it("multiplexes the requests in flight over one connection", function()
      local c = h2_inst()
      tls:control("POST", "/_emulator/faults", { method = "PUT", delay = 0.3, count = 8 })
      local results = c:import_many(items(40), { concurrency = 8 })
      assert_all_ok(results, 40)
      for i = 1, 40 do assert.equals("n" .. i, results[i].value.name) end
      local n, all_h2 = connections()
      assert.is_true(all_h2, "a request came over HTTP/1.1")
      assert.equals(1, n)
      assert.equals(40, count(tls:requests(), "PUT"))
      c:close()
    end)

    it("retries a 5xx burst and reset streams, accounting for every item", function()
      local c = h2_inst({ retries = 3 })
      tls:control("POST", "/_emulator/faults", { method = "PUT", status = 503, count = 10 })
      tls:control("POST", "/_emulator/faults", { method = "PUT", action = "drop", count = 6 })
      assert_all_ok(c:import_many(items(60)), 60)
      assert.equals(60 + 16, count(tls:requests(), "PUT"))
      assert.equals(60, #assert(c:list()))
      c:close()
    end)

    -- nginx ends an HTTP/2 connection after keepalive_requests streams
    -- (GOAWAY), as servers do on a deploy: the streams sent past that are
    -- refused.  libcurl 7.88 re-sends them on a new connection but gives up
    -- on a few ("Connection died, tried 5 times"): the batch retries those.
    it("loses no item when the server ends its connections every few streams", function()
      local ng = helper.start_nginx(([[
        server {
          listen 127.0.0.1:@PORT@ ssl http2;
          ssl_certificate %s;
          ssl_certificate_key %s;
          keepalive_requests 10;
          location / { default_type application/json; return 200 '{"name":"n","connection":$connection}'; }
        }]]):format(tls.certificate.cert, tls.certificate.key))
      finally(function() ng:stop() end)
      local c = marketplace.installation("icfg_1", { token = "test-token", ca_file = tls.certificate.cert,
        base_url = "https://localhost:" .. ng.port, retry_base = 0.01, retries = 4 }) -- ~1% of attempts fail
      local results = c:import_many(items(300))
      assert_all_ok(results, 300)
      local conns, n = {}, 0
      for _, r in ipairs(results) do
        if not conns[r.value.connection] then conns[r.value.connection], n = true, n + 1 end
      end
      assert.is_true(n >= 30, "expected a new connection every 10 streams, saw " .. n)
      c:close()
    end)

    it("pauses every stream on 429 and still lands everything", function()
      local c = h2_inst({ retries = 4 })
      tls:control("POST", "/_emulator/rate-limit", { limit = 15, window = 1 })
      local results = c:import_many(items(45))
      tls:control("DELETE", "/_emulator/rate-limit")
      assert_all_ok(results, 45)
      local puts = count(tls:requests(), "PUT")
      assert.is_true(puts >= 45 + 1 and puts <= 45 + 8 * 4, "requests: " .. puts)
      assert.equals(45, #assert(c:list()))
      c:close()
    end)
  end)
end)
