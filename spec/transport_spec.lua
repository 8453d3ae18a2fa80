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

  -- Every request that leaves is counted, libcurl's own resend on a fresh
  -- connection included (a kept-alive connection that dies before the
  -- answer), and no call sends more than `retries` allows.
  describe("requests that left", function()
    local function deletes(method)
      local n = 0
      for _, r in ipairs(emu:requests()) do if r.method == (method or "DELETE") then n = n + 1 end end
      return n
    end

    it("a DELETE whose answer was lost, resent by libcurl and answered 404, is done", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
      assert.truthy(inst:import("db_1", BODY))                -- a kept-alive connection
      emu:control("POST", "/_emulator/faults", { method = "DELETE", action = "lose" })
      assert.is_true(inst:delete("db_1"))
      assert.equals(2, deletes())                             -- the server deleted, then answered 404
      assert.is_nil(emu:record("icfg_1", "db_1"))
      inst:close()
    end)

    it("the same in a batch", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url })
      assert.truthy(inst:import("db_0", BODY))
      assert.truthy(inst:import("db_1", BODY))
      -- db_0's DELETE opens the batch's connection; db_1's answer is lost on it.
      emu:control("POST", "/_emulator/faults", { method = "DELETE", path = "/v1/installations/icfg_1/resources/db_1",
        action = "lose" })
      local results = inst:delete_many({ "db_0", "db_1" }, { concurrency = 1 })
      assert.same({ { ok = true, value = true }, { ok = true, value = true } }, results)
      assert.equals(3, deletes())
      inst:close()
    end)

    it("counts libcurl's resend in attempts, and keeps it within retries", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url,
        retries = 1, retry_base = 0.01 })
      assert.truthy(inst:import("db_1", BODY))
      emu:control("POST", "/_emulator/faults", { method = "PATCH", action = "drop", count = 5 })
      local out, err = inst:update("db_1", { name = "m" })
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.equals(2, err.attempts)
      assert.equals(2, deletes("PATCH"))
      inst:close()
    end)

    it("with retries = 0 sends a request once, resend or not", function()
      local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url, retries = 0 })
      assert.truthy(inst:import("db_1", BODY))
      emu:control("POST", "/_emulator/faults", { method = "PATCH", action = "drop" })
      local out, err = inst:update("db_1", { name = "m" })
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.equals(1, err.attempts)
      assert.matches("not sent again", err.message)
      assert.equals(1, deletes("PATCH"))
      local s = core.session({ token = "test-token" })
      local status, _, meta = s:perform("GET", emu.url .. "/v1/installations/icfg_1/resources/db_1")
      assert.equals(200, status)
      assert.equals(1, meta.sent)
      s:close()
      inst:close()
    end)
  end)

  it("does not retry an answer whose headers pass libcurl's 300 KB: asking again gets the same", function()
    local inst = marketplace.installation("icfg_1", { token = "test-token", base_url = emu.url, retries = 2,
      retry_base = 0.01 })
    emu:control("POST", "/_emulator/faults", { method = "GET", status = 200, body = "{}", count = 5,
      headers = { ["X-Filler-1"] = ("a"):rep(100000), ["X-Filler-2"] = ("b"):rep(100000),
                  ["X-Filler-3"] = ("c"):rep(100000), ["X-Filler-4"] = ("d"):rep(20000) } })
    local out, err = inst:list()
    assert.is_nil(out)
    assert.equals("transport", err.kind)
    assert.matches("Too large response headers", err.message, 1, true)
    assert.equals(1, err.attempts)
    inst:close()
  end)

  -- A finalizer may run at any allocation, also while the session builds a
  -- call's answer: it may close the session or call it again.  The child
  -- arranges for a collection to start inside the call (a 2 MB answer after
  -- a full collection), which Lua 5.3 and 5.4 then finish, finalizers
  -- included, before the call returns.
  describe("a session busy with a call", function()
    local CHILD = [[
      local core = require "vercel.marketplace.core"
      local URL, TOKEN, MODE = %q, %q, %q
      local s = core.session { token = TOKEN }
      local state = {}
      local function gc()
        state.fired = true
        if MODE == "close" then s:close() else state.inner = select(2, pcall(s.perform, s, "GET", URL .. "small")) end
      end
      collectgarbage("collect")
      collectgarbage("setpause", 200); collectgarbage("setstepmul", 100000)
      coroutine.wrap(function() setmetatable({}, { __gc = gc }) end)()
      local pok, status, body = pcall(s.perform, s, "GET", URL .. "big")
      local during = state.fired
      collectgarbage("setstepmul", 200)
      local name = pok and type(body) == "string" and body:match('"name":"(%%w+)"')
      body = nil
      local after = select(2, pcall(s.perform, s, "GET", URL .. "small"))
      print(("during=%%s status=%%s name=%%s inner=%%s after=%%s"):format(tostring(during), tostring(status),
        tostring(name), tostring(state.inner), tostring(after)))
    ]]

    local function run(mode)
      local url = emu.url .. "/v1/installations/icfg_b/resources/"
      assert.equals(200, (emu:api("PUT", "/v1/installations/icfg_b/resources/big",
        { productId = "p", name = "big", status = "ready", metadata = { blob = ("m"):rep(2 * 1024 * 1024) } })))
      assert.equals(200, (emu:api("PUT", "/v1/installations/icfg_b/resources/small",
        { productId = "p", name = "small", status = "ready" })))
      local ok, out = helper.run_lua(CHILD:format(url, "test-token", mode))
      assert.is_true(ok, out)
      if not out:find("during=true", 1, true) then
        -- 5.1 and LuaJIT collect on their own terms: the window is not hit.
        assert.is_true(_VERSION == "Lua 5.1", out)
        return nil
      end
      return out
    end

    it("closes when the call ends if a finalizer closed it meanwhile", function()
      local out = run("close")
      if not out then return pending("Lua 5.1 and LuaJIT do not collect inside the call here") end
      assert.matches("status=200 name=big", out, 1, true)
      assert.matches("after=attempt to use a closed session", out, 1, true)
    end)

    -- On 5.1 and LuaJIT a finalizer's error reaches whatever allocated,
    -- and pushing a C function allocates: none of that may happen between
    -- marking a handle busy and the protected call that clears it.
    it("stays usable when a finalizer raises as a call starts (LuaJIT)", function()
      local script = os.tmpname()
      helper.write_file(script, [[
        local core = require "vercel.marketplace.core"
        local s = core.session { token = "tok-0123456789abcdef" }
        local m = core.multi(s, 2)
        local function bomb()
          local p = newproxy(true)
          getmetatable(p).__gc = function() error("finalizer error") end
        end
        local function settle(f, ...)
          for _ = 1, 5 do pcall(collectgarbage) end
          local ok, err = pcall(f, ...)
          for _ = 1, 100 do
            if ok or not tostring(err):find("finalizer error") then break end
            ok, err = pcall(f, ...)
          end
          return ok, err
        end
        collectgarbage("setpause", 100); collectgarbage("setstepmul", 400)
        for i = 1, 20000 do
          pcall(bomb)
          if not pcall(s.redact, s, "text") then
            local ok, err = settle(s.redact, s, "again")
            if not ok then print("session, iteration " .. i .. ": " .. tostring(err)) return end
          end
          pcall(bomb)
          if not pcall(m.poll, m, 0) then
            local ok, err = settle(m.poll, m, 0)
            if not ok then print("batch, iteration " .. i .. ": " .. tostring(err)) return end
          end
        end
        print("usable")
      ]])
      local cpath = os.getenv("VERCEL_MARKETPLACE_LUAJIT_CPATH") or (helper.root .. "/build/luajit/?.so")
      local ok, out = helper.popen_run(("LUA_CPATH=%q timeout 60 luajit %q 2>&1"):format(cpath .. ";;", script))
      os.remove(script)
      assert.is_true(ok, out)
      assert.equals("usable\n", out)
    end)

    it("refuses a call a finalizer makes meanwhile: installation busy", function()
      local out = run("reenter")
      if not out then return pending("Lua 5.1 and LuaJIT do not collect inside the call here") end
      assert.matches("status=200 name=big", out, 1, true)
      assert.matches("inner=installation busy", out, 1, true)
      assert.matches("after=200", out, 1, true)
    end)
  end)

  -- The command line traps SIGINT (core.trap_interrupt): a call in flight
  -- or waiting to retry ends at once, as kind "interrupted".
  describe("SIGINT, trapped", function()
    -- `code` in a child in the background with SIGINT at its default (sh
    -- starts background jobs with it ignored), after lines that set `m`
    -- and `core`, trap SIGINT and say "ready"; interrupted `after` seconds
    -- after that.  -> its output, and the
    -- milliseconds from the signal to its end.
    local function interrupt(code, after)
      local file, out, done = os.tmpname(), os.tmpname(), os.tmpname()
      helper.write_file(file, [[
        local m = require "vercel.marketplace"
        local core = require "vercel.marketplace.core"
        assert(core.trap_interrupt())
        print("ready") io.stdout:flush()
      ]] .. code)
      os.remove(done)
      local pid = tonumber(helper.capture(("sh -c '(env --default-signal=INT timeout 30 %s %s >%s 2>&1; echo \"exit $?\" >%s) >/dev/null 2>&1 & echo $!'")
        :format(helper.lua_bin, file, out, done)))
      for _ = 1, 200 do                                   -- about 10 s
        if (helper.read_file(out) or ""):find("ready\n", 1, true) then break end
        helper.sleep(0.05)
      end
      helper.sleep(after)
      local signalled = helper.now()
      os.execute("pkill -INT -P " .. pid .. " 2>/dev/null")
      for _ = 1, 400 do                                   -- about 20 s
        if helper.read_file(done) then break end
        helper.sleep(0.01)
      end
      local ms = (helper.now() - signalled) * 1000
      local text = (helper.read_file(out) or "") .. (helper.read_file(done) or "")
      for _, f in ipairs({ file, out, done }) do os.remove(f) end
      return text, ms
    end

    it("ends a call in flight and a wait before a retry within a second", function()
      emu:control("POST", "/_emulator/faults", { method = "GET", action = "hang" })
      local text, ms = interrupt(([[
        local inst = m.installation("icfg_1", { token = "test-token", base_url = %q })
        local out, err = inst:list()
        print(err.kind, err.attempts, core.interrupted())
      ]]):format(emu.url), 0.5)
      assert.matches("interrupted\t1\ttrue", text, 1, true)
      assert.is_true(ms < 1000, text)
      emu:control("DELETE", "/_emulator/faults")
      emu:control("POST", "/_emulator/faults", { method = "GET", status = 503, retry_after = 20 })
      local before = #emu:requests()
      text, ms = interrupt(([[
        local inst = m.installation("icfg_1", { token = "test-token", base_url = %q, max_retry_delay = 30 })
        local out, err = inst:list()
        print(err.kind, err.attempts)
      ]]):format(emu.url), 0.5)
      assert.matches("interrupted\t1", text, 1, true)
      assert.is_true(ms < 1000, text)
      assert.equals(before + 1, #emu:requests())               -- no retry after the signal
    end)

    it("returns from a sleep at once when the SIGINT came before it", function()
      local ok, out = helper.run_lua([[
        local core = require "vercel.marketplace.core"
        assert(core.trap_interrupt())
        io.popen("kill -INT $PPID"):close() -- not os.execute: system() ignores SIGINT meanwhile
        for _ = 1, 100 do if core.interrupted() then break end core.sleep(0.01) end
        local t = core.now()
        core.sleep(3)
        print(core.interrupted(), core.now() - t < 1)
      ]])
      assert.is_true(ok, out)
      assert.equals("true\ttrue\n", out)
    end)

    it("stops a batch, saying what became of every item", function()
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = "/v1/installations/icfg_1/resources/db_1[0-9]", delay = 20, count = 10 })
      local text, ms = interrupt(([[
        local inst = m.installation("icfg_1", { token = "test-token", base_url = %q })
        local items = {}
        for i = 1, 30 do items[i] = { id = "db_" .. i, body = { productId = "p", name = "n", status = "ready" } } end
        local ok, e = pcall(inst.import_many, inst, items, { concurrency = 4 })
        print(ok, e.kind, e.counts.done, e.counts.failed, e.counts.in_flight, e.counts.not_started, #e.results)
        for i, r in ipairs(e.results) do io.write(r.state, r.ok and "" or (" " .. r.err.kind), "\n") end
        print(tostring(e))
      ]]):format(emu.url), 1)
      -- db_1..db_9 land; db_10..db_13 hang in flight; db_14..db_30 wait.
      assert.matches("false\tinterrupted\t9\t0\t4\t17\t30", text, 1, true)
      assert.matches("done\n", text, 1, true)
      assert.matches("in_flight aborted\n", text, 1, true)
      assert.matches("not_started aborted\n", text, 1, true)
      assert.matches("interrupted by SIGINT; the batch stopped: 9 done, 0 failed, 4 in flight (outcome unknown), 17 not started", text, 1, true)
      assert.is_true(ms < 1000, text)
    end)
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

    -- The system's trust store is made to hold the test certificate (a
    -- private mount namespace binds a bundle over libcurl's built-in one):
    -- ca_path must still replace it, not add to it.
    it("trusts only ca_path when it is given, not the system's store beside it", function()
      if not os.execute("unshare -m --propagation private true 2>/dev/null") then
        return pending("no mount namespace here (unshare -m)")
      end
      local bundle, empty, hashed = os.tmpname(), os.tmpname(), os.tmpname()
      os.remove(empty)
      os.remove(hashed)
      assert(os.execute(("cat %s %s >%s && mkdir %s %s && cp %s %s/ && openssl rehash %s"):format(
        "/etc/ssl/certs/ca-certificates.crt", tls.certificate.cert, bundle, empty, hashed,
        tls.certificate.cert, hashed, hashed)))
      local child = os.tmpname()
      helper.write_file(child, ([[
        local m = require "vercel.marketplace"
        local function try(opts)
          opts.token, opts.base_url, opts.retries = "test-token", %q, 0
          local out, err = m.installation("icfg_1", opts):list()
          return out and "ok" or err.kind .. ": " .. err.message
        end
        print("system: " .. try({}))
        print("empty ca_path: " .. try({ ca_path = %q }))
        print("ca_path: " .. try({ ca_path = %q }))
      ]]):format(url("localhost"), empty, hashed))
      local ok, out = helper.popen_run(("unshare -m --propagation private sh -c 'mount --bind %s %s && exec %s %s' 2>&1")
        :format(bundle, "/etc/ssl/certs/ca-certificates.crt", helper.lua_bin, child))
      os.execute(("rm -rf %s %s %s %s"):format(bundle, empty, hashed, child))
      assert.is_true(ok, out)
      assert.matches("system: ok", out, 1, true)           -- the bind holds
      assert.matches("empty ca_path: transport: [^\n]*[Cc]ertificate", out)
      assert.matches("\nca_path: ok", out, 1, true)
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
