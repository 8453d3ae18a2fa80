-- Retries: on 429, 500/502/503/504 and connection failures, with backoff and
-- jitter, honouring Retry-After up to a cap; never on other 4xx.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local retry = require "vercel.marketplace.retry"
local core = require "vercel.marketplace.core"

describe("retry policy", function()
  local opts = { retry_base = 0.5, max_retry_delay = 60 }

  it("retries what is transient and nothing else", function()
    for _, s in ipairs({ 429, 500, 502, 503, 504 }) do
      assert.is_true(retry.retryable({ kind = "http", status = s }), s)
    end
    for _, s in ipairs({ 400, 401, 403, 404, 409, 410, 422, 501, 302 }) do
      assert.is_false(retry.retryable({ kind = "http", status = s }), s)
    end
    assert.is_true(retry.retryable({ kind = "transport" }, true))
    assert.is_false(retry.retryable({ kind = "transport" }, false))
    assert.is_false(retry.retryable({ kind = "timeout" }, true))
    assert.is_false(retry.retryable({ kind = "decode" }))
    assert.is_false(retry.retryable({ kind = "validation" }))
  end)

  it("backs off exponentially with jitter between half and all of the step", function()
    for n = 1, 6 do
      local step = math.min(60, 0.5 * 2 ^ (n - 1))
      for _ = 1, 50 do
        local d = retry.delay(n, { kind = "http", status = 503 }, opts)
        assert.is_true(d >= step / 2 and d <= step, ("retry %d waited %g"):format(n, d))
      end
    end
    assert.is_true(retry.delay(20, { kind = "http", status = 503 }, opts) <= 60)
  end)

  it("ends a request at 2xx, and a DELETE at 404 once an attempt has failed", function()
    assert.is_true(retry.done("PUT", 200, 1))
    assert.is_true(retry.done("DELETE", 204, 1))
    assert.is_true(retry.done("DELETE", 404, 2))
    assert.is_false(retry.done("DELETE", 404, 1))
    assert.is_false(retry.done("GET", 404, 2))
    assert.is_false(retry.done("PUT", 503, 2))
    assert.is_false(retry.done("DELETE", nil, 2))
  end)

  it("waits at least a second after a 429 without Retry-After, jittered", function()
    local min, max = math.huge, 0
    for _ = 1, 200 do
      local d = retry.delay(1, { kind = "http", status = 429 }, opts)
      min, max = math.min(min, d), math.max(max, d)
    end
    assert.is_true(min >= 1, "waited " .. min .. " s")
    assert.is_true(max <= 2, "waited " .. max .. " s")
    assert.is_true(max - min > 0.5, "no jitter: " .. min .. " to " .. max .. " s")
    -- A max_retry_delay under a second wins; at a second the wait is exactly that.
    local capped = { retries = 3, retry_base = 0.5, max_retry_delay = 1 }
    for _ = 1, 20 do assert.equals(1, retry.delay(1, { kind = "http", status = 429 }, capped)) end
    capped.max_retry_delay = 0.2
    for _ = 1, 20 do assert.is_true(retry.delay(1, { kind = "http", status = 429 }, capped) <= 0.2) end
  end)

  it("honours Retry-After up to max_retry_delay, then gives up", function()
    assert.equals(3, retry.delay(1, { kind = "http", status = 429, retry_after = 3 }, opts))
    assert.is_nil(retry.delay(1, { kind = "http", status = 429, retry_after = 61 }, opts))
  end)
end)

describe("retry jitter", function()
  -- nginx workers are forked from one master: with Lua's own generator
  -- (never seeded on 5.1 and LuaJIT, and copied by fork everywhere) every
  -- worker would wait the same "random" times and retry in step.
  it("differs between processes forked from one parent", function()
    local script = os.tmpname()
    helper.write_file(script, [=[
      local ffi = require "ffi"
      ffi.cdef [[ int fork(void); int waitpid(int pid, int *status, int options); ]]
      local retry = require "vercel.marketplace.retry"
      math.randomseed(42)
      local pid = ffi.C.fork()
      local waits = {}
      for n = 1, 5 do waits[n] = ("%.9f"):format(retry.delay(3, { kind = "http", status = 503 },
        { retry_base = 1, max_retry_delay = 60 })) end
      io.stdout:write((pid == 0 and "child " or "parent ") .. table.concat(waits, " ") .. "\n")
      io.stdout:flush()
      if pid == 0 then os.exit(0) end
      ffi.C.waitpid(pid, ffi.new("int[1]"), 0)
    ]=])
    local cpath = os.getenv("VERCEL_MARKETPLACE_LUAJIT_CPATH") or (helper.root .. "/build/luajit/?.so")
    local ok, out = helper.popen_run(("LUA_CPATH=%q timeout 20 luajit %q 2>&1"):format(cpath .. ";;", script))
    os.remove(script)
    assert.is_true(ok, out)
    local parent, child = out:match("parent ([^\n]+)"), out:match("child ([^\n]+)")
    assert.truthy(parent and child, out)
    assert.are_not.equal(parent, child)
  end)
end)

describe("retries", function()
  local emu = helper.use_emulator({ token = "test-token" })

  local function open(opts)
    opts = opts or {}
    opts.token = "test-token"
    opts.base_url = opts.base_url or emu.url
    opts.retry_base = opts.retry_base or 0.01
    opts.max_retry_delay = opts.max_retry_delay or 5
    return marketplace.installation("icfg_1", opts)
  end

  local function fault(f)
    assert.equals(201, (emu:control("POST", "/_emulator/faults", f)))
  end

  it("retries 5xx until it succeeds", function()
    for _, status in ipairs({ 500, 502, 503, 504 }) do
      emu:reset()
      fault({ status = status, count = 2 })
      local res, err = open({ retries = 2 }):list()
      assert.is_nil(err)
      assert.same({}, res)
      assert.equals(3, #emu:requests())
    end
  end)

  it("stops after `retries` retries and says how many attempts were made", function()
    fault({ status = 503, count = 5 })
    local out, err = open({ retries = 2 }):list()
    assert.is_nil(out)
    assert.equals(503, err.status)
    assert.equals(3, err.attempts)
    assert.equals(3, #emu:requests())
  end)

  it("never retries other 4xx", function()
    for _, status in ipairs({ 400, 401, 403, 404, 409, 410, 422 }) do
      emu:reset()
      fault({ status = status, count = 3 })
      local _, err = open({ retries = 3 }):list()
      assert.equals(status, err.status)
      assert.equals(1, #emu:requests())
    end
  end)

  it("waits Retry-After seconds after a 429", function()
    fault({ status = 429, retry_after = 1 })
    local t0 = core.now()
    assert.truthy(open({ retries = 1 }):list())
    assert.is_true(core.now() - t0 >= 0.9)
    assert.equals(2, #emu:requests())
  end)

  it("understands Retry-After as an HTTP-date", function()
    fault({ status = 429, retry_after_date = 2 })
    local _, err = open({ retries = 0 }):list()
    assert.equals(429, err.status)
    assert.is_true(err.retry_after >= 0 and err.retry_after <= 2.5, tostring(err.retry_after))
  end)

  it("prefers retry-after-ms", function()
    fault({ status = 429, retry_after_ms = 300, retry_after = 30 })
    local t0 = core.now()
    assert.truthy(open({ retries = 1 }):list())
    local waited = core.now() - t0
    assert.is_true(waited >= 0.25 and waited < 5, tostring(waited))
  end)

  it("does not wait past max_retry_delay: the error says how long to wait", function()
    fault({ status = 429, retry_after = 120 })
    local out, err = open({ retries = 3, max_retry_delay = 2 }):list()
    assert.is_nil(out)
    assert.equals(120, err.retry_after)
    assert.equals(1, err.attempts)
  end)

  -- The failed attempt may have deleted it: a gateway's 502 after the API
  -- did its work.  Gone is what was asked, so the retry's 404 is done.
  it("counts a DELETE answered 404 after a failed attempt as done", function()
    fault({ method = "DELETE", status = 502 })
    assert.is_true(open({ retries = 1 }):delete("db_gone"))
    assert.equals(2, #emu:requests())
    local _, err = open({ retries = 1 }):delete("db_gone") -- first attempt: 404 is an error
    assert.equals(404, err.status)
    assert.equals(1, err.attempts)
    fault({ method = "GET", status = 502 })                -- only DELETE: a GET's 404 stays one
    _, err = open({ retries = 1 }):get("db_gone")
    assert.equals(404, err.status)
    assert.equals(2, err.attempts)
  end)

  it("retries a dropped connection", function()
    fault({ action = "drop" })
    assert.truthy(open({ retries = 1 }):list())
    assert.equals(2, #emu:requests())
  end)

  it("retries a refused connection, boundedly", function()
    local out, err = open({ base_url = "http://127.0.0.1:" .. helper.closed_port(), retries = 2 }):list()
    assert.is_nil(out)
    assert.equals("transport", err.kind)
    assert.equals(3, err.attempts)
  end)

  it("does not retry a timeout", function()
    fault({ delay = 2 })
    local _, err = open({ retries = 2, timeout = 0.2 }):list()
    assert.equals("timeout", err.kind)
    assert.equals(1, err.attempts)
  end)

  it("gets through the emulator's rate limit", function()
    emu:control("POST", "/_emulator/rate-limit", { limit = 2, window = 1 })
    local inst = open({ retries = 3 })
    for i = 1, 4 do
      assert.truthy(inst:import("db_" .. i, { productId = "p", name = "n", status = "ready" }))
    end
    assert.equals(4, #assert(inst:list()))
    assert.is_true(#emu:requests() > 5) -- some were answered 429 and retried
  end)
end)
