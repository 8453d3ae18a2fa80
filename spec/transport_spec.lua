-- The libcurl transport: one kept-alive connection per installation, only
-- http and https, TLS always verified, and a session userdata whose close is
-- idempotent and shared by close(), __gc and __close.
local helper = require "helper"
local marketplace = require "vercel.marketplace"
local core = require "vercel.marketplace.core"

local BODY = { productId = "p", name = "n", status = "ready" }

describe("transport", function()
  local emu = helper.use_emulator({ token = "test-token" })

  describe("keep-alive", function()
    it("reuses one connection for every request of an installation", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
      for i = 1, 5 do assert.truthy(inst:import("db_" .. i, BODY)) end
      assert.truthy(inst:list())
      assert.truthy(inst:delete("db_1"))
      local reqs = emu:requests()
      assert.equals(7, #reqs)
      for i = 2, #reqs do
        assert.equals(reqs[1].connection, reqs[i].connection)
      end
      inst:close()
    end)

    it("sets the method and body afresh on a reused handle", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
      assert.truthy(inst:import("db_1", BODY))
      assert.truthy(inst:get("db_1"))
      assert.truthy(inst:delete("db_1"))
      assert.truthy(inst:import("db_1", BODY))
      local seen, n = {}, #core.encode("import", BODY)
      for i, r in ipairs(emu:requests()) do seen[i] = r.method .. " " .. #r.body end
      assert.same({ "PUT " .. n, "GET 0", "DELETE 0", "PUT " .. n }, seen)
      inst:close()
    end)
  end)

  describe("session", function()
    it("speaks only http and https", function()
      local s = core.session({ token = "t" })
      for _, url in ipairs({ "file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1/", "dict://127.0.0.1/" }) do
        local status, kind = s:perform("GET", url)
        assert.is_nil(status)
        assert.equals("transport", kind)
      end
      s:close()
    end)

    it("sends the path as given, never squashing '..' (CURLOPT_PATH_AS_IS)", function()
      local s = core.session({ token = "test-token" })
      local status = s:perform("GET", emu.url .. "/v1/installations/icfg_1/resources/../x/./y")
      assert.equals(404, status)
      assert.equals("/v1/installations/icfg_1/resources/../x/./y", emu:requests()[1].path)
      s:close()
    end)

    it("sends a large body at once, without Expect: 100-continue", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
      local big = { productId = "p", name = "n", status = "ready", metadata = { blob = string.rep("x", 2 * 1024 * 1024) } }
      assert.truthy(inst:import("db_big", big))
      local req = emu:requests()[1]
      assert.is_nil(req.headers.expect)
      assert.equals(#core.encode("import", big), #req.body)
      inst:close()
    end)

    it("refuses a URL with CR, LF, spaces or NUL", function()
      local s = core.session({ token = "t" })
      assert.has_error(function() s:perform("GET", emu.url .. "/a\r\nX: y") end)
      assert.has_error(function() s:perform("GET", emu.url .. "/a\0b") end)
      s:close()
    end)

    -- What the server may write there: delta-seconds or an HTTP-date, with
    -- blanks around it (RFC 9110); nothing strtod alone would take.
    it("reads Retry-After as whole seconds or an HTTP-date, and retry-after-ms as whole ms", function()
      local s = core.session({ token = "t" })
      local function seen(headers)
        emu:control("POST", "/_emulator/faults", { status = 503, headers = headers })
        local _, _, meta = s:perform("GET", emu.url .. "/v1/x")
        return meta.retry_after
      end
      assert.equals(7, seen({ ["Retry-After"] = "7" }))
      assert.equals(120, seen({ ["Retry-After"] = "\t120\t" }))
      for _, v in ipairs({ "inf", "1e3", "0x10", "-5", "1.5", "7abc", "9999999999999" }) do
        assert.is_nil(seen({ ["Retry-After"] = v }), v)
      end
      assert.equals(1.5, seen({ ["retry-after-ms"] = "1500" }))
      assert.is_nil(seen({ ["retry-after-ms"] = "Fri, 31 Dec 2999 23:59:59 GMT" }))
      s:close()
    end)

    it("times out however small the timeout (0 would mean none to libcurl)", function()
      local s = core.session({ token = "t", timeout = 0.0004 })
      emu:control("POST", "/_emulator/faults", { action = "hang" })
      local t0 = core.now()
      local status, kind = s:perform("GET", emu.url .. "/v1/x")
      assert.is_nil(status)
      assert.equals("timeout", kind)
      assert.is_true(core.now() - t0 < 1)
      s:close()
    end)

    it("checks max_response_size itself, and names it whole in the error", function()
      for _, bad in ipairs({ -1, 0 / 0, 0.5, 1e30 }) do
        assert.has_error(function() core.session({ token = "t", max_response_size = bad }) end)
      end
      local s = core.session({ token = "t", max_response_size = 3000000000 - 852516353 })
      emu:control("POST", "/_emulator/faults", { status = 200, body = '"' .. ("x"):rep(100) .. '"' })
      assert.equals(200, (s:perform("GET", emu.url .. "/v1/x")))
      s:close()
      s = core.session({ token = "t", max_response_size = 10 })
      emu:control("POST", "/_emulator/faults", { status = 200, body = '"' .. ("x"):rep(100) .. '"' })
      local _, _, msg = s:perform("GET", emu.url .. "/v1/x")
      assert.equals("response larger than 10 bytes (max_response_size)", msg)
      s:close()
    end)

    -- The token string must live until the headers are built from it: here
    -- it is a long string (never interned) referenced nowhere else, and every
    -- other option read collects garbage (valgrind saw a use after free).
    it("keeps the token however the options table hands it over", function()
      local function token() return ("long-token-"):rep(5) end -- a new string each call
      local own = helper.start_emulator({ token = token() })
      finally(function() own:stop() end)
      local opts = setmetatable({}, { __index = function(_, k)
        if k == "token" then return token() end
        collectgarbage()
      end })
      local s = core.session(opts)
      local status = s:perform("GET", own.url .. "/v1/installations/icfg_1/resources")
      assert.equals(200, status) -- 401 had the token been wrong
      s:close()
    end)

    it("closes once, however many times it is closed", function()
      local s = core.session({ token = "t" })
      assert.matches("open", tostring(s))
      s:close()
      s:close()
      assert.matches("closed", tostring(s))
      assert.has_error(function() s:perform("GET", emu.url) end, "attempt to use a closed session")
    end)

    it("is collected with its installation", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
        assert.truthy(inst:list())
        weak[1], weak[2] = inst, inst._session
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
    end)

    if _VERSION == "Lua 5.4" then
      it("closes with a to-be-closed variable", function()
        local f = assert(load([[
          local marketplace, url = ...
          local session
          do
            local inst <close> = marketplace.installation("icfg_1", { token = "test-token", base_url = url })
            session = inst._session
          end
          return tostring(session)
        ]]))
        assert.matches("closed", f(marketplace, emu.url))
      end)
    end
  end)

  -- libcurl reads the proxy variables the curl command does.  The emulator
  -- stands in for the proxy: it is sent the absolute URL and answers as the
  -- API, so the request is seen to have gone through it.
  it("goes through the proxy that http_proxy names", function()
    local ok, out = helper.run_lua([[
      local marketplace = require "vercel.marketplace"
      local inst = marketplace.installation("icfg_1", { token = "test-token", retries = 0,
        base_url = "http://api.vercel.test" })
      local list, err = inst:list()
      print(list and #list or tostring(err))
    ]], { http_proxy = emu.url, no_proxy = "", NO_PROXY = "" })
    assert.is_true(ok, out)
    assert.equals("0\n", out)
    local reqs = emu:requests()
    assert.equals(1, #reqs)
    assert.equals("api.vercel.test", reqs[1].headers.host)
    assert.equals("/v1/installations/icfg_1/resources", reqs[1].path)
  end)

  describe("TLS", function()
    local tls = helper.use_emulator({ token = "test-token", tls = true })

    -- The test certificate names DNS:localhost only.
    local function url(host)
      return (tls.url:gsub("127%.0%.0%.1", host))
    end

    it("verifies the server: an unknown certificate is a transport error, not retried", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = url("localhost"),
        retries = 2 })
      local out, err = inst:list()
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.equals(1, err.attempts)
      assert.matches("certificate", err.message:lower())
      assert.equals(0, #tls:requests())
    end)

    it("trusts a CA bundle given with ca_file", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = url("localhost"),
        ca_file = tls.certificate.cert })
      assert.same({}, assert(inst:list()))
      assert.truthy(inst:import("db_1", BODY))
    end)

    it("checks the host name against the certificate", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = url("127.0.0.1"),
        ca_file = tls.certificate.cert, retries = 0 })
      local out, err = inst:list()
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.matches("127.0.0.1", err.message, 1, true)
      assert.equals(0, #tls:requests())
    end)

    -- api.vercel.com offers HTTP/2; so does the emulator over HTTPS.
    it("speaks HTTP/2 where the server offers it, every call on one connection", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = url("localhost"),
        ca_file = tls.certificate.cert })
      assert.equals("n", assert(inst:import("db_1", BODY)).name)
      assert.equals("n", assert(inst:get("db_1")).name)
      assert.equals(1, #assert(inst:list()))
      assert.truthy(inst:delete("db_1"))
      local _, err = inst:get("db_1")
      assert.equals(404, err.status)
      local reqs = tls:requests()
      assert.equals(5, #reqs)
      for _, r in ipairs(reqs) do
        assert.equals("HTTP/2.0", r.protocol)
        assert.equals(reqs[1].connection, r.connection)
      end
      -- Headers read as over HTTP/1.1: the request id and Retry-After.
      assert.matches("^emu", err.request_id)
      tls:control("POST", "/_emulator/faults", { status = 429, retry_after = 7 })
      local _, limited = marketplace.installation("icfg_1", { token = "test-token", retries = 0,
        base_url = url("localhost"), ca_file = tls.certificate.cert }):list()
      assert.equals(429, limited.status)
      assert.equals(7, limited.retry_after)
      inst:close()
    end)
  end)
end)
