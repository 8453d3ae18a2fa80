-- The fault matrix: every operation against every way the server can
-- misbehave (the emulator's /_emulator/faults).  Each case checks the error
-- kind, how many attempts were made (counted by the client and by the
-- server), and an upper bound on the time taken, with a generous margin.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"
local bodies = require "fixtures.bodies"

local TOKEN = "faults-token"
local RETRIES = 2 -- so a request is tried at most 3 times
local MARGIN = 3  -- seconds of slack on every time bound (loaded CI, valgrind)

-- Every operation, called on an installation where resource db_1 exists.
-- `answer`: what a success holds ("object" decoded JSON, "none" true).
local OPS = {
  { name = "import", answer = "object", call = function(i) return i:import("db_1", bodies.import_min()) end },
  { name = "update", answer = "object", call = function(i) return i:update("db_1", { status = "pending" }) end },
  { name = "get", answer = "object", call = function(i) return i:get("db_1") end },
  { name = "list", answer = "object", call = function(i) return i:list() end },
  { name = "delete", answer = "none", call = function(i) return i:delete("db_1") end },
  { name = "update_secrets", answer = "none",
    call = function(i) return i:update_secrets("db_1", { bodies.secret() }) end },
}

describe("fault matrix", function()
  local emu = helper.use_emulator({ token = TOKEN })

  local function installation(opts)
    local o = { token = TOKEN, base_url = emu.url, retries = RETRIES, retry_base = 0.01,
                max_retry_delay = 5, timeout = 5, connect_timeout = 2 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return marketplace.installation("icfg_f", o)
  end

  -- A fresh emulator state holding db_1, and an empty request log.
  local function fresh()
    emu:reset()
    local inst = installation({ retries = 0 })
    assert(inst:import("db_1", bodies.import_min()))
    inst:close()
    assert.equals(200, (emu:control("DELETE", "/_emulator/requests")))
  end

  local function fault(f)
    assert.equals(201, (emu:control("POST", "/_emulator/faults", f)))
  end

  -- Run op on a new installation; returns value, err, seconds, requests seen.
  local function run(op, opts)
    local inst = installation(opts)
    local t0 = core.now()
    local v, err = op.call(inst)
    local took = core.now() - t0
    inst:close()
    return v, err, took, #emu:requests()
  end

  local function failed(err, kind, attempts)
    assert.is_table(err, "expected an error")
    assert.equals(kind, err.kind, tostring(err))
    assert.equals(attempts, err.attempts, tostring(err))
    assert.is_string(tostring(err))
  end

  for _, op in ipairs(OPS) do
    describe(op.name, function()
      before_each(fresh)

      it("gets through a burst of 5xx within its retries", function()
        fault({ status = 500, count = 1 })
        fault({ status = 503, count = 1 })
        local v, err, took, seen = run(op)
        assert.is_nil(err)
        assert.truthy(v)
        assert.equals(3, seen)
        assert.is_true(took < 1 + MARGIN, took)
      end)

      it("gives up after a longer 5xx burst: http error, 3 attempts", function()
        fault({ status = 502, count = 10 })
        local v, err, took, seen = run(op)
        assert.is_nil(v)
        failed(err, "http", 3)
        assert.equals(502, err.status)
        assert.equals(3, seen)
        assert.is_true(took < 1 + MARGIN, took)
      end)

      -- Retry-After: 1 (whole seconds, as Vercel sends it) costs a second, so
      -- the other operations are told in milliseconds (retry-after-ms).
      local header = op.name == "import" and { retry_after = 1 } or { retry_after_ms = 150 }
      local wait = header.retry_after or header.retry_after_ms / 1000
      it("weathers a 429 storm with " .. (header.retry_after and "Retry-After" or "retry-after-ms")
         .. ", waiting as told", function()
        local f = { status = 429, count = 10, error = { code = "rate_limited", message = "slow down" } }
        for k, v in pairs(header) do f[k] = v end
        fault(f)
        local v, err, took, seen = run(op, { retries = 1 })
        assert.is_nil(v)
        failed(err, "http", 2)
        assert.equals(429, err.status)
        assert.equals("rate_limited", err.code)
        assert.equals(wait, err.retry_after)
        assert.equals(2, seen)
        assert.is_true(took >= wait * 0.9 and took < wait + MARGIN, took)
      end)

      it("does not wait out a Retry-After beyond max_retry_delay", function()
        fault({ status = 429, count = 10, retry_after = 3600 })
        local v, err, took, seen = run(op)
        assert.is_nil(v)
        failed(err, "http", 1)
        assert.equals(3600, err.retry_after)
        assert.equals(1, seen)
        assert.is_true(took < MARGIN, took)
      end)

      it("backs off within max_retry_delay on a 429 storm without Retry-After", function()
        fault({ status = 429, count = 10 })
        local v, err, took, seen = run(op, { max_retry_delay = 0.1 })
        assert.is_nil(v)
        failed(err, "http", 3)
        assert.is_nil(err.retry_after)
        assert.equals(3, seen)
        assert.is_true(took >= 0.1 and took < 0.2 + MARGIN, took)
      end)

      for action, what in pairs({ drop = "a dropped connection", truncate = "an answer cut short mid-body" }) do
        it("retries " .. what .. ", then says transport", function()
          fault({ action = action, count = 10 })
          local v, err, took, seen = run(op)
          assert.is_nil(v)
          failed(err, "transport", 3)
          assert.equals(3, seen)
          assert.is_true(took < 1 + MARGIN, took)
        end)
      end

      it("recovers when only the first answer is cut short", function()
        fault({ action = "truncate", count = 1 })
        local v, err, _, seen = run(op)
        assert.is_nil(err)
        assert.truthy(v)
        assert.equals(2, seen)
      end)

      it("reads a malformed 200 body as a decode error, or ignores it where none is expected", function()
        fault({ action = "malformed", count = 10 })
        local v, err, took, seen = run(op)
        if op.answer == "object" then
          assert.is_nil(v)
          assert.equals("decode", err.kind)
          assert.equals(200, err.status)
          assert.is_truthy(err.request_id)
        else
          assert.is_true(v)
        end
        assert.equals(1, seen)
        assert.is_true(took < MARGIN, took)
      end)

      it("keeps an unparsable error body out of the error's fields", function()
        fault({ action = "malformed", status = 503, count = 10 })
        local v, err, _, seen = run(op)
        assert.is_nil(v)
        failed(err, "http", 3)
        assert.equals(503, err.status)
        assert.is_nil(err.code)
        assert.is_nil(err.api_message)
        assert.equals(3, seen)
      end)

      it("refuses an oversized answer without retrying", function()
        fault({ status = 200, body = '{"name":"' .. string.rep("x", 200000) .. '"}', count = 10 })
        local v, err, took, seen = run(op, { max_response_size = 65536 })
        assert.is_nil(v)
        failed(err, "transport", 1)
        assert.matches("max_response_size", err.message)
        assert.equals(1, seen)
        assert.is_true(took < MARGIN, took)
      end)

      it("gives up on a server that never answers after its timeout, without retrying", function()
        fault({ action = "hang", count = 10 })
        local v, err, took, seen = run(op, { timeout = 0.3 })
        assert.is_nil(v)
        failed(err, "timeout", 1)
        assert.equals(1, seen)
        assert.is_true(took >= 0.25 and took < 0.3 + MARGIN, took)
      end)

      it("retries a refused connection a bounded number of times", function()
        local v, err, took = run(op, { base_url = "http://127.0.0.1:" .. helper.closed_port() })
        assert.is_nil(v)
        failed(err, "transport", 3)
        assert.is_true(took < 1 + MARGIN, took)
        assert.equals(0, #emu:requests())
      end)
    end)
  end

  -- api.vercel.com speaks HTTP/2, so a test of truncated answers runs over
  -- it too: there the emulator resets the stream mid-body (it has no raw
  -- socket to write a short answer on), and the client must see a cut
  -- answer, not the 500 the fault used to turn into.
  describe("over TLS and HTTP/2", function()
    local tls = helper.use_emulator({ token = TOKEN, tls = true })

    local function h2(opts)
      local o = { base_url = tls.https_url, ca_file = tls.certificate.cert }
      for k, v in pairs(opts or {}) do o[k] = v end
      return installation(o)
    end

    local function seeded()
      local inst = h2({ retries = 0 })
      assert(inst:import("db_1", bodies.import_min()))
      inst:close()
      assert.equals(200, (tls:control("DELETE", "/_emulator/requests")))
    end

    local function all_h2(reqs)
      for _, r in ipairs(reqs) do assert.equals("HTTP/2.0", r.protocol) end
    end

    it("retries an answer cut short, then says transport", function()
      seeded()
      assert.equals(201, (tls:control("POST", "/_emulator/faults", { action = "truncate", count = 10 })))
      local inst = h2()
      local v, err = inst:get("db_1")
      inst:close()
      assert.is_nil(v)
      assert.is_table(err)
      assert.equals("transport", err.kind, tostring(err))
      assert.is_nil(err.status)
      local reqs = tls:requests()
      assert.equals(3, #reqs)
      all_h2(reqs)
    end)

    it("recovers when only the first answer is cut short", function()
      seeded()
      assert.equals(201, (tls:control("POST", "/_emulator/faults", { action = "truncate", count = 1 })))
      local inst = h2()
      local v, err = inst:get("db_1")
      inst:close()
      assert.is_nil(err)
      assert.equals("db_1", v.id)
      local reqs = tls:requests()
      assert.equals(2, #reqs)
      all_h2(reqs)
    end)
  end)

  describe("batches", function()
    local has_batch = pcall(require, "vercel.marketplace.batch")
    local batch_it = has_batch and it or pending

    -- Every item ends accounted for, in input order, whatever the server does.
    local BATCH_OPS = {
      { name = "import_many", items = function(n)
        local t = {}
        for i = 1, n do t[i] = { id = "db_" .. i, body = bodies.import_min() } end
        return t
      end },
      { name = "update_many", items = function(n)
        local t = {}
        for i = 1, n do t[i] = { id = "db_" .. i, body = { status = "pending" } } end
        return t
      end },
      { name = "delete_many", items = function(n)
        local t = {}
        for i = 1, n do t[i] = { id = "db_" .. i } end
        return t
      end },
    }

    local function accounted(results, n)
      assert.equals(n, #results)
      for i = 1, n do
        local r = results[i]
        assert.is_table(r, "item " .. i)
        assert.is_boolean(r.ok, "item " .. i)
        if r.ok then assert.is_not_nil(r.value, "item " .. i)
        else assert.is_table(r.err, "item " .. i) end
      end
    end

    local function seed(n)
      emu:reset()
      local inst = installation({ retries = 0 })
      for i = 1, n do assert(inst:import("db_" .. i, bodies.import_min())) end
      inst:close()
      assert.equals(200, (emu:control("DELETE", "/_emulator/requests")))
    end

    local CASES = {
      { name = "a 5xx burst", fault = { status = 503, count = 4 }, all_ok = true },
      { name = "a 429 storm", fault = { status = 429, count = 100, retry_after = 3600 }, kind = "http" },
      { name = "dropped connections", fault = { action = "drop", count = 100 }, kind = "transport" },
      { name = "answers cut short", fault = { action = "truncate", count = 100 }, kind = "transport" },
      { name = "a server that never answers", fault = { action = "hang", count = 100 }, kind = "timeout",
        opts = { timeout = 0.3 } },
      { name = "oversized answers", fault = { status = 200, body = string.rep(" ", 100000), count = 100 },
        kind = "transport", opts = { max_response_size = 1024 } },
    }

    for _, bop in ipairs(BATCH_OPS) do
      for _, case in ipairs(CASES) do
        batch_it(bop.name .. " accounts for every item through " .. case.name, function()
          local n = 6
          seed(n)
          if case.fault then assert.equals(201, (emu:control("POST", "/_emulator/faults", case.fault))) end
          local inst = installation(case.opts)
          local t0 = core.now()
          local results = inst[bop.name](inst, bop.items(n), { concurrency = n })
          local took = core.now() - t0
          inst:close()
          accounted(results, n)
          for i = 1, n do
            if case.all_ok then assert.is_true(results[i].ok, "item " .. i)
            elseif case.kind then
              assert.is_false(results[i].ok, "item " .. i)
              assert.equals(case.kind, results[i].err.kind, "item " .. i)
            end
          end
          assert.is_true(took < 3 + MARGIN, took)
        end)
      end

      batch_it(bop.name .. " accounts for every item when the server is gone", function()
        local inst = installation({ base_url = "http://127.0.0.1:" .. helper.closed_port() })
        local results = inst[bop.name](inst, bop.items(5), { concurrency = 2 })
        inst:close()
        accounted(results, 5)
        for i = 1, 5 do assert.equals("transport", results[i].err.kind) end
      end)
    end
  end)
end)
