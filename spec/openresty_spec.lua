-- Inside nginx: an "app" nginx of our own (one worker) whose handlers use the
-- client against the emulator.  Where a request may yield the client goes
-- over cosockets (two slow calls overlap), where it cannot (init_by_lua) it
-- falls back to libcurl, and either way callers see the same results and
-- the same error fields as the libcurl path in this process.
local helper = require "helper"
local cjson = require "cjson"
local marketplace = require "vercel.marketplace"

local TOKEN = "app-token"
local ICFG = "icfg_app"
local UA = "openresty-spec/1"
local BODY = { productId = "p", name = "n", status = "ready" }
local unpack = table.unpack or unpack -- luacheck: ignore (Lua 5.1 and LuaJIT)

-- The app's handlers: POST /call with a JSON call {opts, op, args, shared}
-- runs one operation and answers {out, err, phase}; /raw drives a transport
-- session directly; /init answers what init_by_lua saw; /timer runs a call
-- in a timer.  Errors travel as plain tables.
local APP = [==[
local cjson = require "cjson"
local marketplace = require "vercel.marketplace"
local transport = require "vercel.marketplace.transport"

local M = {}

local function plain(err)
  if not err then return nil end
  local t = {}
  for k, v in pairs(err) do t[k] = v end
  return t
end

local function open(conf, opts)
  local o = { token = conf.token, base_url = conf.url, user_agent = conf.ua, retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return marketplace.installation(conf.icfg, o)
end

-- init_by_lua: cosockets are unavailable here, so this import goes through
-- libcurl; the installation is kept and used again by content handlers.
function M.init(conf)
  M.conf = conf
  M.shared = open(conf, { retries = 2 })
  local out, err = M.shared:import("init_1", { productId = "p", name = "from-init", status = "ready" })
  M.init_result = { out = out, err = plain(err), phase = ngx.get_phase() }
  local ok, why = pcall(open, conf, { ca_file = "/etc/ssl/certs/ca-certificates.crt" })
  M.init_result.ca_file_refused = not ok and tostring(why) or false
  local batch = M.shared:import_many({ { id = "init_b1", body = { productId = "p", name = "b1", status = "ready" } },
    { id = "init_b2", body = { productId = "p", name = "b2", status = "ready" } } })
  M.init_result.batch = { batch[1].ok and batch[1].value.name, batch[2].ok and batch[2].value.name }
end

local function reply(v)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(v))
end

local function run(call)
  local inst = call.shared and M.shared or open(M.conf, call.opts)
  local out, err = inst[call.op](inst, unpack(call.args or {}))
  return { out = out, err = plain(err), phase = ngx.get_phase() }
end

function M.call()
  ngx.req.read_body()
  reply(run(cjson.decode(ngx.req.get_body_data())))
end

-- {settings, requests = {{method, url, body, limit}...}, parallel} -> the
-- raw results {status or null, body or kind, meta or message, retryable,
-- sent, elapsed}, in order; `parallel`: each request on its own light
-- thread.  {settings, redact = {text, secrets}} -> {redacted = the cosocket
-- session's redact(text, secrets)}.
function M.raw()
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data())
  local settings = spec.settings
  settings.token = M.conf.token
  local session = transport.open(settings)
  if spec.redact then
    reply({ redacted = session.nonblocking:redact(spec.redact[1], spec.redact[2]) })
    return session:close()
  end
  local function one(r)
    ngx.update_time()
    local started = ngx.now()
    local a, b, c, d, e = session:perform(r[1], r[2], r[3] ~= cjson.null and r[3] or nil, r[4])
    ngx.update_time()
    local null = cjson.null
    return { a or null, b, c, d == nil and null or d, e == nil and null or e, ngx.now() - started }
  end
  local results, threads = {}, {}
  for i, r in ipairs(spec.requests) do
    if spec.parallel then threads[i] = ngx.thread.spawn(one, r) else results[i] = one(r) end
  end
  for i, t in ipairs(threads) do results[i] = select(2, assert(ngx.thread.wait(t))) end
  session:close()
  reply(results)
end

function M.init_answer() reply(M.init_result) end

-- {opts, op, items, concurrency, stop_at} -> {results, raised, progress,
-- phase}: a batch; on_progress raises "stop here" when done == stop_at.
function M.batch()
  ngx.req.read_body()
  local call = cjson.decode(ngx.req.get_body_data())
  local inst = open(M.conf, call.opts)
  local progress = {}
  local ok, results = pcall(inst[call.op .. "_many"], inst, call.items, {
    concurrency = call.concurrency,
    on_progress = function(done, total)
      progress[#progress + 1] = { done, total }
      if done == call.stop_at then error("stop here", 0) end
    end,
  })
  local out = {}
  for i, r in ipairs(ok and results or {}) do out[i] = { ok = r.ok, value = r.value, err = plain(r.err) } end
  reply({ results = out, raised = not ok and results or nil, progress = progress, phase = ngx.get_phase() })
end

-- A call from a timer (a phase that yields too), awaited boundedly.
function M.timer()
  ngx.req.read_body()
  local call, result = cjson.decode(ngx.req.get_body_data()), nil
  assert(ngx.timer.at(0, function() result = run(call) end))
  for _ = 1, 100 do
    if result then break end
    ngx.sleep(0.05)
  end
  reply(result or { timer = "no result" })
end

return M
]==]

-- A hostile HTTP server, as another nginx: each location writes its answer
-- byte by byte over the raw request socket, boundedly (15 s, 64 MB).
local HOSTILE = [==[
local M = {}

local function raw()
  return assert(ngx.req.socket(true))
end

local function drip(s, text)
  for i = 1, math.min(#text, 15) do
    if not s:send(text:sub(i, i)) then return end
    ngx.sleep(1)
  end
end

-- The whole answer, one byte a second.
function M.drip()
  drip(raw(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
end

-- The head at once, then the body one byte a second.
function M.slow_body()
  local s = raw()
  s:send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
  drip(s, ("x"):rep(100))
end

-- What never ends (until the reader hangs up or 64 MB went): a header line,
-- a status line, a chunked body, a body read to the connection's close.
local ENDLESS = {
  header = { "HTTP/1.1 200 OK\r\nX-Big: ", ("a"):rep(65536) },
  status = { "HTTP/1.1 200 ", ("a"):rep(65536) },
  chunked = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "10000\r\n" .. ("a"):rep(65536) .. "\r\n" },
  to_close = { "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", ("a"):rep(65536) },
}

function M.endless()
  local s, what = raw(), ENDLESS[ngx.var.arg_what]
  s:send(what[1])
  for _ = 1, 1024 do
    if not s:send(what[2]) then return end
  end
end

-- ?lines=N&size=S: N header lines of S bytes each, their CRLF included.
function M.headers()
  local s, n, size = raw(), tonumber(ngx.var.arg_lines), tonumber(ngx.var.arg_size)
  local line = "X-H: " .. ("a"):rep(size - 7) .. "\r\n"
  s:send("HTTP/1.1 200 OK\r\n")
  for _ = 1, n do s:send(line) end
  s:send("Content-Length: 2\r\n\r\n{}")
end

return M
]==]

-- A process's resident memory (VmRSS) and its peak (VmHWM), in KB.
local function memory(pid)
  local status = helper.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(status:match("VmRSS:%s*(%d+)")), tonumber(status:match("VmHWM:%s*(%d+)"))
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- The app's http {} body: the content handlers, TLS trust and a resolver.
local function app_conf(conf, cert, dns_port, silent_dns_port)
  return ([[
  lua_ssl_trusted_certificate %s;
  lua_ssl_verify_depth 2;
  resolver 127.0.0.1:%d ipv6=off;
  lua_socket_log_errors off;
  init_by_lua_block { require("app").init(require("cjson").decode(%q)) }
  server {
    listen 127.0.0.1:@PORT@;
    location = /call { content_by_lua_block { require("app").call() } }
    location = /raw { content_by_lua_block { require("app").raw() } }
    location /dns/ {
      resolver 127.0.0.1:%d ipv6=off;
      resolver_timeout 20s;
      location = /dns/raw { content_by_lua_block { require("app").raw() } }
      location = /dns/call { content_by_lua_block { require("app").call() } }
    }
    location = /init { content_by_lua_block { require("app").init_answer() } }
    location = /timer { content_by_lua_block { require("app").timer() } }
    location = /batch { content_by_lua_block { require("app").batch() } }
  }
]]):format(cert, dns_port, cjson.encode(conf), silent_dns_port)
end

-- Error fields a caller matches on.  The message of a transport or timeout
-- error is the transport's own words (libcurl's or ours), and request ids
-- differ per request: for those only the presence must match.
local function comparable(err)
  if type(err) ~= "table" then return err end
  local t = {}
  for k, v in pairs(err) do t[k] = v end
  if t.kind == "transport" or t.kind == "timeout" then t.message = type(t.message) end
  t.request_id = t.request_id and "present"
  -- An HTTP-date has whole seconds: the two runs may straddle one.
  if t.retry_after then t.retry_after = math.floor(t.retry_after / 5 + 0.5) * 5 end
  return t
end

describe("inside nginx", function()
  local emu, tls, untrusted, cert, other_cert, dns, silent_dns, app, tmp

  lazy_setup(function()
    cert, other_cert = helper.make_certificate(), helper.make_certificate()
    emu = helper.start_emulator({ token = TOKEN })
    tls = helper.start_emulator({ token = TOKEN, tls_cert = cert.cert, tls_key = cert.key })
    untrusted = helper.start_emulator({ token = TOKEN, tls_cert = other_cert.cert, tls_key = other_cert.key })
    dns = helper.start_dns()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(helper.execute("mkdir -m 700 " .. helper.shell_quote(tmp)))
    write(tmp .. "/app.lua", APP)
    silent_dns = helper.start_dns({ silent = true }) -- for the app's /dns/ locations
    app = helper.start_nginx(app_conf({ url = emu.url, token = TOKEN, icfg = ICFG, ua = UA }, cert.cert, dns.port,
      silent_dns.port), { lua_path = tmp })
  end)

  lazy_teardown(function()
    for _, s in ipairs({ app, emu, tls, untrusted }) do
      if s then s:stop() end
    end
    if dns then dns.stop() end
    if silent_dns then silent_dns.stop() end
    for _, c in ipairs({ cert, other_cert }) do c.remove() end
    if tmp then helper.execute("rm -rf " .. helper.shell_quote(tmp)) end
  end)

  before_each(function()
    for _, e in ipairs({ emu, tls, untrusted }) do e:reset() end
  end)

  local function fault(e, f)
    assert.equals(201, (e:control("POST", "/_emulator/faults", f)))
  end

  -- One operation through the app: out, err, phase.
  local function in_nginx(call, path)
    local status, body = helper.http("POST", app.url .. (path or "/call"), { body = cjson.encode(call), timeout = 20 })
    assert.equals(200, status, tostring(body) .. "\n" .. app:error_log())
    local v = cjson.decode(body)
    return v.out, v.err, v.phase
  end

  -- The same operation here, through libcurl.
  local function in_process(call)
    local o = { token = TOKEN, base_url = emu.url, user_agent = UA, retries = 0 }
    for k, v in pairs(call.opts or {}) do o[k] = v end
    local inst = marketplace.installation(ICFG, o)
    local out, err = inst[call.op](inst, unpack(call.args or {}))
    inst:close()
    return out, err
  end

  describe("cosockets", function()
    it("do not block the worker: two slow imports overlap", function()
      fault(emu, { delay = 1, count = 2 })
      local outs = {}
      for i = 1, 2 do outs[i] = os.tmpname() end
      local function curl(i)
        local call = cjson.encode({ shared = true, op = "import", args = { "c" .. i, BODY } })
        return "curl -s --max-time 10 -o " .. helper.shell_quote(outs[i]) .. " -H 'Content-Type: application/json'"
          .. " --data-binary " .. helper.shell_quote(call) .. " " .. helper.shell_quote(app.url .. "/call") .. " &"
      end
      local started = helper.now()
      assert(helper.execute(curl(1) .. " " .. curl(2) .. " wait"))
      local elapsed = helper.now() - started
      for i = 1, 2 do
        local v = cjson.decode(helper.read_file(outs[i]))
        os.remove(outs[i])
        assert.same({ name = "n" }, v.out)
        assert.equals("content", v.phase)
      end
      assert.is_true(elapsed >= 1, "the emulator answered after 1 s")
      assert.is_true(elapsed < 1.8, ("two 1 s calls took %.2f s: they did not overlap"):format(elapsed))
      assert.equals(2, #emu:requests())
    end)

    it("run in a timer too", function()
      local out, err, phase = in_nginx({ op = "import", args = { "t1", BODY } }, "/timer")
      assert.is_nil(err)
      assert.same({ name = "n" }, out)
      assert.equals("timer", phase)
    end)

    it("keep the connection alive across requests (one pool per origin)", function()
      for i = 1, 3 do assert.truthy((in_nginx({ op = "import", args = { "k" .. i, BODY } }))) end
      local reqs = emu:requests()
      assert.equals(3, #reqs)
      for i = 2, 3 do
        assert.equals(reqs[1].connection, reqs[i].connection)
        assert.equals(reqs[1].connection_requests + i - 1, reqs[i].connection_requests)
      end
    end)

    it("send the same request headers as libcurl", function()
      in_process({ op = "import", args = { "h1", BODY } })
      in_nginx({ op = "import", args = { "h1", BODY } })
      in_process({ op = "get", args = { "h1" } })
      in_nginx({ op = "get", args = { "h1" } })
      local reqs = emu:requests()
      assert.equals(4, #reqs)
      assert.same(reqs[1].headers, reqs[2].headers)
      assert.same(reqs[3].headers, reqs[4].headers)
      assert.same(reqs[1].body, reqs[2].body)
      assert.equals("Bearer [token]", reqs[2].headers.authorization)
      assert.is_nil(reqs[4].headers["content-type"])
    end)

    it("name lua-nginx-module, not libcurl, in the default User-Agent", function()
      in_nginx({ op = "import", args = { "ua1", BODY }, opts = { user_agent = false } })
      in_process({ op = "import", args = { "ua1", BODY }, opts = { user_agent = false } })
      local reqs = emu:requests()
      assert.matches("^vercel%-marketplace%-lua/[%d.]+ %(lua%-nginx%-module/%d+%.%d+%.%d+; Lua 5%.1%)$",
        reqs[1].headers["user-agent"])
      assert.matches("^vercel%-marketplace%-lua/[%d.]+ %(libcurl/[%d.]+; Lua 5%.%d%)$", reqs[2].headers["user-agent"])
    end)

    it("answer with the session contract of libcurl: status, body, meta", function()
      local url = emu.url .. "/v1/installations/" .. ICFG .. "/resources"
      fault(emu, { method = "GET", status = 429, retry_after = 3, count = 1 })
      local spec = { settings = { user_agent = UA, timeout = 5 }, requests = { { "GET", url }, { "GET", url } } }
      local status, body = helper.http("POST", app.url .. "/raw", { body = cjson.encode(spec) })
      assert.equals(200, status, body)
      local got = cjson.decode(body)
      -- libcurl, for the same answers:
      fault(emu, { method = "GET", status = 429, retry_after = 3, count = 1 })
      local s = require("vercel.marketplace.core").session({ token = TOKEN, user_agent = UA })
      local a1, b1, m1 = s:perform("GET", url)
      local a2, b2, m2 = s:perform("GET", url)
      s:close()
      local function keys(t)
        local k = {}
        for name in pairs(t) do k[#k + 1] = name end
        table.sort(k)
        return table.concat(k, " ")
      end
      assert.equals("content_type request_id retry_after reused sent", keys(got[1][3]))
      assert.equals(keys(m1), keys(got[1][3]))
      assert.equals(keys(m2), keys(got[2][3]))
      assert.same({ 429, b1, 3 }, { got[1][1], got[1][2], got[1][3].retry_after })
      assert.equals(3, m1.retry_after)
      assert.is_boolean(got[1][3].reused)   -- the pool may hold a connection already
      assert.same({ 200, b2, true, m2.content_type }, { got[2][1], got[2][2], got[2][3].reused, got[2][3].content_type })
      assert.same({ a1, a2, false, true }, { 429, 200, m1.reused, m2.reused })
    end)

    it("retry a 429 after its Retry-After, with ngx.sleep", function()
      fault(emu, { method = "PUT", status = 429, retry_after = 1, count = 1 })
      local started = helper.now()
      local out, err = in_nginx({ op = "import", args = { "r1", BODY }, opts = { retries = 2 } })
      assert.is_nil(err)
      assert.same({ name = "n" }, out)
      assert.is_true(helper.now() - started >= 1)
      assert.equals(2, #emu:requests())
    end)

    it("retry a 5xx", function()
      fault(emu, { method = "PUT", status = 503, count = 1 })
      local out, err = in_nginx({ op = "import", args = { "r2", BODY }, opts = { retries = 2, retry_base = 0.05 } })
      assert.is_nil(err)
      assert.same({ name = "n" }, out)
      assert.equals(2, #emu:requests())
    end)

    it("verify TLS against lua_ssl_trusted_certificate", function()
      local base = (tls.url:gsub("127%.0%.0%.1", "localhost"))
      for i = 1, 2 do
        local out, err = in_nginx({ op = "import", args = { "s" .. i, BODY }, opts = { base_url = base } })
        assert.is_nil(err)
        assert.same({ name = "n" }, out)
      end
      local reqs = tls:requests()
      assert.equals(2, #reqs)
      assert.equals(reqs[1].connection, reqs[2].connection)   -- one handshake, kept alive
    end)

    it("refuse an untrusted certificate, without retrying", function()
      local base = (untrusted.url:gsub("127%.0%.0%.1", "localhost"))
      local out, err = in_nginx({ op = "list", opts = { base_url = base, retries = 2 } })
      assert.is_nil(out)
      assert.equals("transport", err.kind)
      assert.equals(1, err.attempts)
      assert.matches("certificate", err.message)
      assert.equals(0, #untrusted:requests())
    end)

    it("raise for ca_file and ca_path, which cosockets cannot use", function()
      local _, body = helper.http("GET", app.url .. "/init")
      local init = cjson.decode(body)
      assert.matches("ca_file.*lua_ssl_trusted_certificate", init.ca_file_refused)
    end)

    it("never show the token in errors or nginx's log", function()
      local _, err = in_nginx({ op = "list", opts = { base_url = "http://127.0.0.1:" .. helper.closed_port() } })
      assert.equals("transport", err.kind)
      assert.is_nil(cjson.encode(err):find(TOKEN, 1, true))
      assert.is_nil(app:error_log():find(TOKEN, 1, true))
    end)

    it("cut the token out of an error answer that echoes it", function()
      emu:control("POST", "/_emulator/faults", { status = 400, error = { code = "bad", message = "no " .. TOKEN } })
      local _, err = in_nginx({ op = "list" })
      assert.equals(400, err.status)
      assert.equals("no [token]", err.api_message)
    end)

    -- Before the id is shortened to 127 bytes, or a token across the cut
    -- would keep its first bytes; in decode errors too.
    it("cut the token out of a request id that echoes it, as libcurl does", function()
      local echo = ("A"):rep(110) .. TOKEN
      for _, where in ipairs({ "nginx", "libcurl" }) do
        fault(emu, { status = 400, error = { code = "bad", message = "no" }, headers = { ["x-vercel-id"] = echo } })
        fault(emu, { status = 200, body = "not json", headers = { ["x-vercel-id"] = "iad1::" .. TOKEN } })
        local call = { op = "get", args = { "r1" } }
        local _, http = (where == "nginx" and in_nginx or in_process)(call)
        local _, decode = (where == "nginx" and in_nginx or in_process)(call)
        assert.equals(("A"):rep(110) .. "[token]", http.request_id, where)
        assert.equals("decode", decode.kind, where)
        assert.equals("iad1::[token]", decode.request_id, where)
        emu:control("DELETE", "/_emulator/faults")
      end
    end)
  end)

  -- Attempts bounded in time and memory, whatever the server does.
  describe("an attempt", function()
    local hostile, hurl

    lazy_setup(function()
      write(tmp .. "/hostile.lua", HOSTILE)
      local locations = {}
      for _, name in ipairs({ "drip", "slow_body", "endless", "headers" }) do
        locations[#locations + 1] = ("location = /%s { content_by_lua_block { require('hostile').%s() } }")
          :format(name, name)
      end
      hostile = helper.start_nginx("lua_socket_log_errors off;\nserver {\nlisten 127.0.0.1:@PORT@;\n"
        .. table.concat(locations, "\n") .. "\n}\n", { lua_path = tmp })
      hurl = hostile.url
    end)

    lazy_teardown(function()
      if hostile then hostile:stop() end
    end)

    -- The raw results of `requests` through the app (see M.raw), and how
    -- long the app took to answer.
    local function raw(settings, requests, opts)
      opts = opts or {}
      local started = helper.now()
      local status, body = helper.http("POST", app.url .. (opts.path or "/raw"),
        { body = cjson.encode({ settings = settings, requests = requests, parallel = opts.parallel }), timeout = 30 })
      local took = helper.now() - started
      assert.equals(200, status, tostring(body) .. "\n" .. app:error_log())
      return cjson.decode(body), took
    end

    it("ends at its deadline, whatever is slow (timeout = 3)", function()
      local results, took = raw({ user_agent = UA, timeout = 3 }, {
        { "GET", hurl .. "/drip" },                  -- one byte a second
        { "GET", hurl .. "/slow_body" },             -- the head at once, then a byte a second
        { "GET", "http://silent.test:" .. hostile.port .. "/" }, -- a resolver that never answers
      }, { path = "/dns/raw", parallel = true })
      for i, sent in ipairs({ 1, 1, 0 }) do
        local r = results[i]
        assert.same({ cjson.null, "timeout", false, sent }, { r[1], r[2], r[4], r[5] },
          "request " .. i .. ": " .. tostring(r[3]))
        assert.is_true(r[6] >= 2.9 and r[6] < 3.5, ("request %d ended after %.2f s"):format(i, r[6]))
      end
      assert.matches("resolving silent.test", results[3][3])
      -- Nothing outlives the attempts (a thread left behind would hold the
      -- app's request open).
      assert.is_true(took < 4, ("the app answered after %.2f s"):format(took))
    end)

    it("connects within connect_timeout, resolving the name included", function()
      local results = raw({ user_agent = UA, timeout = 5, connect_timeout = 1 },
        { { "GET", "http://silent.test:" .. hostile.port .. "/" } }, { path = "/dns/raw" })
      assert.same({ cjson.null, "timeout", false, 0 }, { results[1][1], results[1][2], results[1][4], results[1][5] })
      assert.matches("connect_timeout", results[1][3])
      assert.is_true(results[1][6] >= 0.9 and results[1][6] < 1.5, ("it ended after %.2f s"):format(results[1][6]))
    end)

    it("leaves no thread behind when it succeeds", function()
      local url = emu.url .. "/v1/installations/" .. ICFG .. "/resources"
      local results, took = raw({ user_agent = UA, timeout = 5 }, { { "GET", url } })
      assert.equals(200, results[1][1])
      assert.is_true(took < 2, ("the app answered after %.2f s"):format(took))
    end)

    it("timed out leaves nothing in the pool: the next request gets its own answer", function()
      assert.equals(200, (emu:api("PUT", "/v1/installations/" .. ICFG .. "/resources/p1", BODY)))
      assert.equals(200, (emu:api("PUT", "/v1/installations/" .. ICFG .. "/resources/p2",
        { productId = "p", name = "second", status = "ready" })))
      fault(emu, { method = "GET", delay = 1, count = 1 })
      local base = emu.url .. "/v1/installations/" .. ICFG .. "/resources/"
      local results = raw({ user_agent = UA, timeout = 0.3 }, { { "GET", base .. "p1" }, { "GET", base .. "p2" } })
      assert.equals("timeout", results[1][2])
      assert.equals(200, results[2][1])
      assert.equals("second", cjson.decode(results[2][2]).name)
      local gets = {}
      for _, r in ipairs(emu:requests()) do
        if r.method == "GET" then gets[#gets + 1] = r end
      end
      assert.equals(2, #gets)
      assert.are_not.equal(gets[1].connection, gets[2].connection)
    end)

    it("classes a name that does not resolve as libcurl does: transport, retryable, nothing sent", function()
      local results = raw({ user_agent = UA, timeout = 3 }, { { "GET", "http://nx.test/" } }, { path = "/dns/raw" })
      assert.same({ cjson.null, "transport", "could not resolve host: nx.test", true, 0 },
        { unpack(results[1], 1, 5) })
      assert.is_true(results[1][6] < 1)
      -- and retried as such, like any transport failure that may pass
      local out, err = in_nginx({ op = "list", opts = { base_url = "http://nx.test", retries = 1, retry_base = 0.01 } },
        "/dns/call")
      assert.is_nil(out)
      assert.same({ "transport", "could not resolve host: nx.test", 2 }, { err.kind, err.message, err.attempts })
    end)

    it("counts every request that left, the stale connection's resend too", function()
      local url = emu.url .. "/v1/installations/" .. ICFG .. "/resources"
      local settings = { user_agent = UA, timeout = 5 }
      local first = raw(settings, { { "GET", url } })   -- leaves a connection in the pool
      assert.same({ 200, 1 }, { first[1][1], first[1][3].sent })
      fault(emu, { action = "drop", count = 1 })        -- the kept-alive connection answers nothing
      local again = raw(settings, { { "GET", url } })
      assert.same({ 200, 2, false }, { again[1][1], again[1][3].sent, again[1][3].reused })
      fault(emu, { action = "drop", count = 2 })        -- and the fresh one neither
      local failed = raw(settings, { { "GET", url } })
      assert.same({ "transport", true, 2 }, { failed[1][2], failed[1][4], failed[1][5] })
      raw(settings, { { "GET", url } })
      local before = #emu:requests()
      fault(emu, { action = "drop", count = 1 })        -- with no request left to send, no resend
      local limited = raw(settings, { { "GET", url, cjson.null, 1 } })
      assert.same({ "transport", false, 1 }, { limited[1][2], limited[1][4], limited[1][5] })
      assert.matches("not sent again", limited[1][3])
      assert.equals(before + 1, #emu:requests())
      local refused = raw(settings, { { "GET", "http://127.0.0.1:" .. helper.closed_port() .. "/" } })
      assert.same({ "transport", true, 0 }, { refused[1][2], refused[1][4], refused[1][5] })
    end)

    -- One request that the server makes endless; its result, how long it
    -- took, and how much the app's worker grew (peak RSS, MB).
    local function endless(what, settings)
      local before = memory(app.pid)
      helper.execute("echo 5 > /proc/" .. app.pid .. "/clear_refs 2>/dev/null") -- peak := now
      local s = { user_agent = UA, timeout = 10 }
      for k, v in pairs(settings or {}) do s[k] = v end
      local results = raw(s, { { "GET", hurl .. "/endless?what=" .. what } })
      local _, peak = memory(app.pid)
      return results[1], results[1][6], (peak - before) / 1024
    end

    for what, message in pairs({ header = "header line of 102400 bytes or more",
                                 status = "header line of 102400 bytes or more",
                                 chunked = "larger than 1048576 bytes", to_close = "larger than 1048576 bytes" }) do
      it("caps what it holds as bytes arrive: an endless " .. what, function()
        local r, took, grew = endless(what, { max_response_size = 1024 * 1024 })
        assert.is_true(grew < 32, ("the worker grew by %.0f MB"):format(grew))
        assert.is_true(took < 1, ("it took %.2f s"):format(took))
        assert.same({ cjson.null, "transport", false }, { r[1], r[2], r[4] })
        assert.matches(message, r[3], 1, true)
      end)
    end

    it("limits headers as libcurl does: a line under 100 KB, all under 300 KB", function()
      local core = require "vercel.marketplace.core"
      local session = core.session({ token = TOKEN, user_agent = UA, timeout = 10 })
      -- {lines, bytes each (CRLF included)}; the status line and Content-Length add 37 bytes
      for _, case in ipairs({ { 1, 102399 }, { 1, 102400 }, { 3, 102390 }, { 7, 43000 }, { 8, 38400 } }) do
        local url = ("%s/headers?lines=%d&size=%d"):format(hurl, case[1], case[2])
        local curl_status = session:perform("GET", url)
        local r = raw({ user_agent = UA, timeout = 10 }, { { "GET", url } })[1]
        local ours = r[1] ~= cjson.null and r[1] or nil
        assert.equals(curl_status, ours, ("%d lines of %d bytes: %s"):format(case[1], case[2], tostring(r[3])))
      end
      session:close()
    end)

    it("redacts with the C core: the token and each secret, longest first", function()
      local status, body = helper.http("POST", app.url .. "/raw", { body = cjson.encode({ settings = { user_agent = UA },
        redact = { "a " .. TOKEN .. " b sec-ret sec-ret-longer", { "sec-ret", "sec-ret-longer" } } }) })
      assert.equals(200, status, body)
      assert.equals("a [token] b [secret] [secret]", cjson.decode(body).redacted)
    end)
  end)

  describe("batches", function()
    local function items(n, prefix)
      local t = {}
      for i = 1, n do t[i] = { id = (prefix or "b") .. i, body = { productId = "p", name = "n" .. i, status = "ready" } } end
      return t
    end

    local function batch(call)
      local status, body = helper.http("POST", app.url .. "/batch", { body = cjson.encode(call), timeout = 30 })
      assert.equals(200, status, tostring(body) .. "\n" .. app:error_log())
      local v = cjson.decode(body)
      assert.equals("content", v.phase)
      return v.results, v
    end

    local function puts()
      local n, conns = 0, {}
      for _, r in ipairs(emu:requests()) do
        if r.method == "PUT" then n, conns[r.connection] = n + 1, true end
      end
      local c = 0
      for _ in pairs(conns) do c = c + 1 end
      return n, c
    end

    it("keep requests in flight over several cosockets, results in input order", function()
      fault(emu, { method = "PUT", delay = 0.3, count = 8 })
      local results = batch({ op = "import", items = items(12), concurrency = 8 })
      assert.equals(12, #results)
      for i = 1, 12 do assert.same({ ok = true, value = { name = "n" .. i } }, results[i]) end
      local n, conns = puts()
      assert.equals(12, n)
      assert.is_true(conns > 1, "all requests came over one connection")
    end)

    it("do not block the worker while they run", function()
      fault(emu, { method = "PUT", delay = 1, count = 4 })
      local out = os.tmpname()
      local call = cjson.encode({ op = "import", items = items(4), concurrency = 4 })
      local started = helper.now()
      assert(helper.execute("curl -s --max-time 10 -o " .. helper.shell_quote(out)
        .. " --data-binary " .. helper.shell_quote(call) .. " " .. helper.shell_quote(app.url .. "/batch") .. " &"))
      for _ = 1, 50 do -- until the batch's requests reach the emulator
        if #emu:requests() > 0 or helper.now() - started > 5 then break end
        helper.sleep(0.02)
      end
      local status = helper.http("GET", app.url .. "/init")
      local answered = helper.now() - started
      assert.equals(200, status)
      for _ = 1, 100 do -- the batch, bounded
        local text = helper.read_file(out)
        if (text and #text > 0) or helper.now() - started > 10 then break end
        helper.sleep(0.05)
      end
      local v = cjson.decode((assert(helper.read_file(out))))
      os.remove(out)
      for i = 1, 4 do assert.is_true(v.results[i].ok) end
      assert.is_true(answered < 0.9, ("another request waited %.2f s for the batch"):format(answered))
    end)

    it("send one at a time with concurrency = 1", function()
      local results = batch({ op = "import", items = items(4), concurrency = 1 })
      for i = 1, 4 do assert.is_true(results[i].ok) end
      local n, conns = puts()
      assert.same({ 4, 1 }, { n, conns })
    end)

    it("refuse invalid items unsent and account for every item", function()
      local list = items(5)
      list[2].body.status = "sideways"
      list[4] = { id = 42, body = list[4].body }
      local results = batch({ op = "import", items = list })
      assert.equals(5, #results)
      for _, i in ipairs({ 1, 3, 5 }) do assert.is_true(results[i].ok) end
      for _, i in ipairs({ 2, 4 }) do assert.equals("validation", results[i].err.kind) end
      assert.equals(3, (puts()))
      local deleted = batch({ op = "delete", items = { "b1", "b3", "missing" } })
      assert.same({ true, true, false }, { deleted[1].ok, deleted[2].ok, deleted[3].ok })
      assert.equals(404, deleted[3].err.status)
    end)

    it("retry a 5xx burst and land every item", function()
      fault(emu, { method = "PUT", status = 503, count = 5 })
      local results = batch({ op = "import", items = items(10), opts = { retries = 3, retry_base = 0.01 } })
      for i = 1, 10 do assert.is_true(results[i].ok, "item " .. i) end
      assert.equals(15, (puts()))
    end)

    it("pause every thread on a 429 and still land everything", function()
      assert.equals(201, (emu:control("POST", "/_emulator/rate-limit", { limit = 15, window = 1 })))
      local started = helper.now()
      local results = batch({ op = "import", items = items(45), opts = { retries = 4 } })
      local elapsed = helper.now() - started
      emu:control("DELETE", "/_emulator/rate-limit")
      for i = 1, 45 do assert.is_true(results[i].ok, "item " .. i) end
      -- As over libcurl: only the requests in flight when the limit ran out
      -- see a 429, nothing new starts during a pause, so 45 items at 15 per
      -- window take about three windows.
      local n = puts()
      assert.is_true(n >= 46 and n <= 45 + 8 * 4, "PUT requests: " .. n)
      assert.is_true(elapsed >= 1.5, "the batch did not wait for Retry-After")
    end)

    it("call on_progress with (done, total), and stop when it raises", function()
      local _, v = batch({ op = "import", items = items(6), concurrency = 3 })
      assert.same({ { 1, 6 }, { 2, 6 }, { 3, 6 }, { 4, 6 }, { 5, 6 }, { 6, 6 } }, v.progress)
      emu:reset()
      fault(emu, { method = "PUT", delay = 0.2, count = 20 })
      local results, w = batch({ op = "import", items = items(20), concurrency = 4, stop_at = 2 })
      assert.same({}, results)
      assert.same({ { 1, 20 }, { 2, 20 } }, w.progress)
      local n = puts()
      assert.is_true(n < 20, "the batch went on after on_progress raised: " .. n .. " requests")
      -- The error raised carries every item's result so far, as over libcurl.
      local e = w.raised
      assert.same({ "callback", "stop here", 20 }, { e.kind, e.cause, #e.results })
      local counts = { done = 0, failed = 0, in_flight = 0, not_started = 0 }
      for i, r in ipairs(e.results) do
        counts[r.state] = counts[r.state] + 1
        if r.state == "done" then assert.same({ name = "n" .. i }, r.value) else assert.equals("aborted", r.err.kind) end
      end
      assert.same(counts, e.counts)
      assert.is_true(counts.done >= 2 and counts.done + counts.in_flight <= n, cjson.encode(counts))
    end)

    -- Threads waiting out a retry look up every tenth of a second: the
    -- batch stops when on_progress raises, not when the longest wait ends.
    it("stop when on_progress raises even while other threads wait to retry", function()
      fault(emu, { method = "PUT", path = ".*/b[2-4]", status = 429, retry_after = 8, count = 3 })
      fault(emu, { method = "PUT", path = ".*/b1", delay = 0.3 })
      local started = helper.now()
      local _, w = batch({ op = "import", items = items(6), concurrency = 4, stop_at = 1, opts = { retries = 2 } })
      assert.equals("callback", w.raised.kind)
      assert.is_true(helper.now() - started < 4, "took " .. (helper.now() - started) .. " s")
    end)
  end)

  describe("init_by_lua", function()
    it("falls back to libcurl; the installation made there then uses cosockets", function()
      local status, body = helper.http("GET", app.url .. "/init")
      assert.equals(200, status)
      local init = cjson.decode(body)
      assert.equals("init", init.phase)
      assert.is_nil(init.err, body)
      assert.is_nil(init.err)
      assert.same({ name = "from-init" }, init.out)
      assert.same({ "b1", "b2" }, init.batch) -- import_many there: libcurl's multi handle
      -- (before_each reset the emulator: the resource imported at start is gone)
      local out, err, phase = in_nginx({ shared = true, op = "import", args = { "init_2", BODY } })
      assert.is_nil(err)
      assert.equals("content", phase)
      assert.same({ name = "n" }, out)
    end)
  end)

  describe("errors are those of the libcurl path", function()
    local function tls_base(host) return (tls.url:gsub("127%.0%.0%.1", host)) end

    -- name, faults to arm, call, expected kind
    local CASES = {
      { "404", {}, { op = "get", args = { "missing" } }, "http" },
      { "bad token", {}, { op = "list", opts = { token = "wrong" } }, "http" },
      { "429 with Retry-After", { { status = 429, retry_after = 120 } },
        { op = "import", args = { "e1", BODY }, opts = { retries = 2 } }, "http" },
      { "429 with an HTTP-date", { { status = 429, retry_after_date = 100 } },
        { op = "import", args = { "e1", BODY }, opts = { retries = 2 } }, "http" },
      { "500, retried", { { status = 500, count = 2 } },
        { op = "import", args = { "e1", BODY }, opts = { retries = 1, retry_base = 0.01 } }, "http" },
      { "timeout, not retried", { { delay = 2 } },
        { op = "get", args = { "e1" }, opts = { timeout = 0.5, retries = 2 } }, "timeout" },
      -- 4 drops: a kept-alive connection that answers nothing is tried once
      -- more on a fresh one within the attempt (libcurl does the same).
      { "dropped connection, retried", { { action = "drop", count = 4 } },
        { op = "list", opts = { retries = 1, retry_base = 0.01 } }, "transport" },
      { "truncated answer, retried", { { action = "truncate", count = 2 } },
        { op = "list", opts = { retries = 1, retry_base = 0.01 } }, "transport" },
      { "oversized answer, not retried", {},
        { op = "list", opts = { max_response_size = 8, retries = 2 } }, "transport" },
      { "malformed answer", { { action = "malformed" } }, { op = "list" }, "decode" },
      { "invalid body", {}, { op = "import", args = { "e1", { name = 1 } } }, "validation" },
      { "refused connection, retried", {},
        { op = "list", opts = { base_url = "refused", retries = 1, retry_base = 0.01 } }, "transport" },
      { "TLS host name mismatch", {},
        { op = "list", opts = { base_url = "tls:127.0.0.1", retries = 2 } }, "transport" },
    }

    for _, case in ipairs(CASES) do
      local name, faults, call, kind = case[1], case[2], case[3], case[4]
      it(name, function()
        local opts = call.opts or {}
        if opts.base_url == "refused" then opts.base_url = "http://127.0.0.1:" .. helper.closed_port() end
        if opts.base_url == "tls:127.0.0.1" then opts.base_url = tls_base("127.0.0.1") end
        local results = {}
        for i, run in ipairs({ "process", "nginx" }) do
          emu:reset()
          for _, f in ipairs(faults) do fault(emu, f) end
          local out, err
          if run == "process" then
            local o = {}
            for k, v in pairs(opts) do o[k] = v end
            if o.base_url and o.base_url:match("^https") then o.ca_file = cert.cert end
            out, err = in_process({ op = call.op, args = call.args, opts = o })
          else
            out, err = in_nginx(call)
          end
          assert.is_nil(out)
          assert.equals(kind, err.kind, tostring(err.message))
          results[i] = comparable(err)
        end
        assert.same(results[1], results[2])
      end)
    end
  end)
end)

-- examples/openresty: the nginx.conf and webhook.lua as shipped, with only
-- the port, the Lua paths and the CA file changed for this machine.
describe("examples/openresty", function()
  local emu, app
  local SECRET = "hook-secret"
  local dir = helper.root .. "/examples/openresty"

  it("loads the client from where the README's install puts it", function()
    local conf = assert(helper.read_file(dir .. "/nginx.conf"))
    local readme = assert(helper.read_file(helper.root .. "/README.md"))
    for _, directive in ipairs({ "lua_package_path", "lua_package_cpath" }) do
      local want = assert(readme:match("\n" .. directive .. "%s+\"([^\"]*)\""), directive)
      local got = assert(conf:match("\n%s*" .. directive .. "%s+\"([^\"]*)\""), directive)
      assert.truthy(got:find(want:gsub(";;$", ""), 1, true), directive .. ": " .. got .. " vs " .. want)
    end
  end)

  local function example_http_body(cert)
    local conf = assert(helper.read_file(dir .. "/nginx.conf"))
    local body = assert(conf:match("\nhttp {\n(.*)}%s*$"), "no http block")
    local n
    body, n = body:gsub("listen 8080;", "listen 127.0.0.1:@PORT@;")
    assert.equals(1, n)
    body = body:gsub("\n%s*lua_package_c?path [^\n]*", "")
    body = body:gsub("lua_ssl_trusted_certificate [^;]*;", "lua_ssl_trusted_certificate " .. cert .. ";")
    local envs = {}
    for name in conf:gmatch("\nenv ([%w_]+);") do envs[#envs + 1] = name end
    return body, envs
  end

  lazy_setup(function()
    emu = helper.start_emulator({ token = TOKEN })
    local cert = helper.make_certificate()
    local body, envs = example_http_body(cert.cert)
    local ok, err = pcall(function()
      app = helper.start_nginx(body, { lua_path = dir, env = envs, env_values = {
        VERCEL_INSTALLATION_ID = ICFG, VERCEL_TOKEN = TOKEN, VERCEL_API_URL = emu.url, WEBHOOK_SECRET = SECRET,
      } })
    end)
    cert.remove()   -- read by nginx at start
    assert(ok, err)
  end)

  lazy_teardown(function()
    if app then app:stop() end
    if emu then emu:stop() end
  end)

  before_each(function() emu:reset() end)

  local function hook(event, secret)
    local headers = { ["X-Webhook-Secret"] = secret or SECRET }
    local status, body = helper.http("POST", app.url .. "/webhooks/payment-failed",
      { headers = headers, body = type(event) == "table" and cjson.encode(event) or event })
    return status, helper.decode(body)
  end

  it("suspends the resource named by the webhook", function()
    assert.equals(200, (emu:api("PUT", "/v1/installations/" .. ICFG .. "/resources/db_1", BODY)))
    local status, body = hook({ resource_id = "db_1", reason = "card declined" })
    assert.equals(200, status, app:error_log())
    assert.same({ ok = true }, body)
    local rec = emu:record(ICFG, "db_1")
    assert.equals("suspended", rec.status)
    assert.same({ level = "error", title = "Suspended: payment failed", message = "card declined" }, rec.notification)
  end)

  it("answers 404 for a resource Vercel does not know", function()
    local status, body = hook({ resource_id = "nope" })
    assert.equals(404, status)
    assert.same({ error = "no such resource" }, body)
  end)

  it("refuses a wrong secret and a bad body, sending nothing", function()
    assert.equals(401, (hook({ resource_id = "db_1" }, "wrong")))
    assert.equals(400, (hook("not json")))
    assert.equals(400, (hook({ resource_id = 1 })))
    assert.equals(0, #emu:requests())
  end)

  it("answers 502 when Vercel fails, keeping the token out of the log", function()
    assert.equals(201, (emu:control("POST", "/_emulator/faults", { status = 503, count = 3 })))
    local status, body = hook({ resource_id = "db_1" })
    assert.equals(502, status)
    assert.equals("http", body.error)
    assert.equals(3, #emu:requests())   -- retried twice, with ngx.sleep
    assert.matches("503", app:error_log())
    assert.is_nil(app:error_log():find(TOKEN, 1, true))
  end)
end)
