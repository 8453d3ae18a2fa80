-- The error model: every failure a caller must handle is `nil, err`, and err
-- says which kind of failure it was.  One describe per kind.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"

local BODY = { productId = "p", name = "n", status = "ready" }
local ID_PATTERN = "^emu"

describe("errors", function()
  local emu = helper.use_emulator({ token = "test-token" })

  local function open(opts)
    opts = opts or {}
    opts.token = opts.token or "test-token"
    opts.base_url = opts.base_url or emu.url
    if opts.retries == nil then opts.retries = 0 end
    return marketplace.installation("icfg_1", opts)
  end

  local function fault(f)
    local status = emu:control("POST", "/_emulator/faults", f)
    assert.equals(201, status)
  end

  describe("validation", function()
    it("lists every problem by path and reads well", function()
      local out, err = open():import("db_1", {
        productId = "p", name = "n", status = "ready",
        billingPlan = { id = "p", type = "prepayment", name = "n", details = { { label = "a" }, { label = 1 } } },
        secrets = { { name = "A" } }, zz = 1,
      })
      assert.is_nil(out)
      assert.equals("validation", err.kind)
      assert.same({
        { path = "billingPlan.details[2].label", message = "expected string, got number" },
        { path = "secrets[1].value", message = "is required" },
        { path = "zz", message = "unknown field" },
      }, err.errors)
      assert.equals("validation error: invalid import body, 3 problems; nothing was sent: "
        .. "billingPlan.details[2].label: expected string, got number; secrets[1].value: is required; "
        .. "zz: unknown field", tostring(err))
    end)
  end)

  describe("http", function()
    it("carries status, code, the API's message and the request id", function()
      local out, err = open({ token = "wrong-token" }):get("db_1")
      assert.is_nil(out)
      assert.equals("http", err.kind)
      assert.equals(401, err.status)
      assert.equals("forbidden", err.code)
      assert.is_string(err.api_message)
      assert.matches(ID_PATTERN, err.request_id)
      assert.equals("GET", err.method)
      assert.equals("/v1/installations/icfg_1/resources/db_1", err.path)
      assert.matches("^http error %(GET /v1/installations/icfg_1/resources/db_1%): the API answered 401 "
        .. "Unauthorized %[forbidden%]: .+ %(request id emu.+%)$", tostring(err))
      assert.is_nil(tostring(err):find("wrong-token", 1, true))
    end)

    it("parses every documented error status", function()
      local inst = open()
      for _, case in ipairs({ { 400, "bad_request" }, { 403, "forbidden" }, { 404, "not_found" },
        { 409, "conflict" }, { 410, "gone" }, { 422, "unprocessable" } }) do
        fault({ status = case[1], error = { code = case[2], message = "because " .. case[2] } })
        local out, err = inst:import("db_1", BODY)
        assert.is_nil(out)
        assert.equals(case[1], err.status)
        assert.equals(case[2], err.code)
        assert.equals("because " .. case[2], err.api_message)
        assert.equals(1, err.attempts)
      end
    end)

    it("keeps the rate limit and Retry-After of a 429", function()
      fault({ status = 429, retry_after = 7,
        error = { code = "rate_limited", message = "slow down", limit = { remaining = 0, reset = 1700000000,
          resetMs = 1700000000000, total = 100 } } })
      local _, err = open():get("db_1")
      assert.equals(429, err.status)
      assert.equals("rate_limited", err.code)
      assert.equals(7, err.retry_after)
      assert.same({ remaining = 0, reset = 1700000000, resetMs = 1700000000000, total = 100 }, err.limit)
    end)

    it("copes with an empty or non-JSON error body", function()
      fault({ status = 500, body = "" })
      local _, err = open():get("db_1")
      assert.equals(500, err.status)
      assert.is_nil(err.code)
      assert.equals("the API answered 500 Internal Server Error", err.message)
      fault({ status = 502, body = "<html>bad gateway</html>" })
      _, err = open():get("db_1")
      assert.equals(502, err.status)
      assert.is_nil(err.api_message)
    end)

    it("treats a redirect as an error and does not follow it", function()
      fault({ status = 302, body = "", headers = { Location = emu.url .. "/v1/installations/icfg_1/resources" } })
      local out, err = open():get("db_1")
      assert.is_nil(out)
      assert.equals(302, err.status)
      assert.matches("redirects are not followed", err.message)
      assert.equals(1, #emu:requests())
    end)
  end)

  describe("timeout", function()
    it("gives up after `timeout` seconds", function()
      fault({ delay = 3 })
      local t0 = core.now()
      local out, err = open({ timeout = 0.3 }):get("db_1")
      assert.is_nil(out)
      assert.equals("timeout", err.kind)
      assert.is_true(core.now() - t0 < 2.5)
    end)
  end)

  describe("transport", function()
    it("reports a refused connection", function()
      local port = helper.closed_port()
      local out, err = open({ base_url = "http://127.0.0.1:" .. port }):get("db_1")
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.matches("onnect", err.message)
    end)

    it("reports a dropped connection", function()
      fault({ action = "drop" })
      local _, err = open():get("db_1")
      assert.equals("transport", err.kind)
    end)

    it("reports a truncated body", function()
      fault({ action = "truncate" })
      local _, err = open():get("db_1")
      assert.equals("transport", err.kind)
    end)

    it("refuses an answer over max_response_size", function()
      fault({ status = 200, body = '{"id":"' .. string.rep("x", 5000) .. '"}' })
      local out, err = open({ max_response_size = 1000 }):get("db_1")
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.matches("max_response_size", err.message)
    end)
  end)

  describe("decode", function()
    it("reports an answer that is not JSON", function()
      fault({ action = "malformed" })
      local out, err = open():get("db_1")
      assert.is_nil(out)
      assert.equals("decode", err.kind)
      assert.equals(200, err.status)
      assert.matches(ID_PATTERN, err.request_id)
      assert.matches("^decode error %(GET ", tostring(err))
      assert.equals(1, err.attempts)
    end)

    it("counts the attempts before the answer that could not be read", function()
      fault({ status = 503, count = 1 })
      fault({ action = "malformed" })
      local _, err = open({ retries = 2, retry_base = 0.01 }):get("db_1")
      assert.equals("decode", err.kind)
      assert.equals(2, err.attempts)
      local c = open({ retries = 2, retry_base = 0.01 })
      fault({ action = "malformed" })
      local results = c:import_many({ { id = "db_1", body = { productId = "p", name = "n", status = "ready" } } })
      assert.equals("decode", results[1].err.kind)
      assert.equals(1, results[1].err.attempts)
    end)

    it("refuses numbers that are not JSON (NaN, Infinity, hex)", function()
      for _, text in ipairs({ '{"id":NaN}', '{"id":Infinity}', '{"id":0x10}' }) do
        fault({ status = 200, body = text })
        local out, err = open():get("db_1")
        assert.is_nil(out, text)
        assert.equals("decode", err.kind)
      end
    end)

    it("reports a list without resources", function()
      fault({ status = 200, body = '{"items":[]}' })
      local out, err = open():list()
      assert.is_nil(out)
      assert.equals("decode", err.kind)
      assert.equals(1, err.attempts)
    end)
  end)
end)
