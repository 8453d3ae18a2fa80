-- bench/run.lua -- `make bench`: how fast the client is next to what the wire
-- allows, in one run, against a local nginx that answers at once
-- (bench/nginx.conf, started on free ports here and stopped by pid).
--
--   imports/s, sequential and 8 in flight: this library vs a raw libcurl C
--     loop sending the same bytes (bench/raw_curl.c, the ceiling); 8 in
--     flight over HTTPS and HTTP/2 (one connection, as api.vercel.com); then
--     the same against a server whose answers take 1 ms
--   bodies/s validated+encoded by core.encode vs cjson.encode of the table
--   peak memory (VmHWM) over BENCH_REQUESTS requests (default 100000)
--   new TLS connections with libcurl's CA cache in effect or not
--
-- Environment: BENCH_REQUESTS (memory run), BENCH_N (throughput runs,
-- default 20000), BENCH_TLS_N (new-connection runs, default 200),
-- BENCH_RAW_CURL (the built bench/raw_curl; the Makefile sets it).
-- Figures are printed, never asserted.
local core = require "vercel.marketplace.core"
local marketplace = require "vercel.marketplace"
local cjson = require "cjson"

local TOKEN = "bench-token" -- raw_curl sends the same
local LUA = arg[-1] or "lua5.4"
local HERE = (debug.getinfo(1, "S").source:gsub("^@", ""):match("^(.*)/[^/]*$")) or "."

-- Shell and file helpers shared with the suite (spec/ is on LUA_PATH: make bench).
local helper = require "helper"
local q, capture = helper.shell_quote, helper.capture
local read_file, write_file = helper.read_file, helper.write_file

-- The body every request carries: the API page's import with every field.
local function import_body(i)
  return {
    productId = "iap_postgres", name = "db-" .. i, status = "ready", ownership = "owned",
    metadata = { region = "iad1", tier = "pro" },
    billingPlan = { id = "plan_pro", type = "subscription", name = "Pro", cost = "$20.00",
      details = { { label = "Storage", value = "10 GB" }, { label = "Support" } } },
    notification = { level = "info", title = "Ready", href = "https://example.com/db" },
    secrets = { { name = "URL", value = "postgres://u:p@h/db", prefix = "POSTGRES" },
                { name = "PASSWORD", value = "s3cret" } },
  }
end

-- Memory: VmHWM and VmRSS in kB.
local function vm(field)
  local s = read_file("/proc/self/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)")) or 0
end

-- The memory run, in a process of its own so nothing else sets its peak:
-- `lua run.lua --memory URL N` prints "requests VmHWM VmRSS lua-kB" at 10%,
-- 50% and 100% of N.  Each chunk of 1000: 500 single imports, then 500
-- through import_many (8 in flight), results dropped.
local function memory_child(url, n)
  local inst = marketplace.installation("icfg_bench", { token = TOKEN, base_url = url })
  local marks = { [math.floor(n / 10)] = true, [math.floor(n / 2)] = true, [n] = true }
  local body, done = import_body(1), 0
  local items = {}
  for i = 1, 500 do items[i] = { id = "m" .. i, body = body } end
  while done < n do
    local k = math.min(1000, n - done)
    for i = 1, math.min(500, k) do assert(inst:import("s" .. i, body)) end
    if k > 500 then
      for i = #items, k - 500 + 1, -1 do items[i] = nil end
      for _, r in ipairs(inst:import_many(items)) do assert(r.ok) end
    end
    for j = done + 1, done + k do
      if marks[j] then
        collectgarbage("step", 0)
        io.write(("%d %d %d %d\n"):format(j, vm("VmHWM"), vm("VmRSS"), math.floor(collectgarbage("count"))))
        io.flush()
      end
    end
    done = done + k
  end
  inst:close()
end

if arg[1] == "--memory" then
  memory_child(arg[2], tonumber(arg[3]))
  os.exit(0)
end

-- nginx --------------------------------------------------------------------

local function port_open(port)
  return os.execute("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null") == true
end

local function free_port()
  for _ = 1, 50 do
    local p = math.random(20000, 60000)
    if not port_open(p) then return p end
  end
  error("no free port in 50 tries")
end

local function alive(pid)
  local stat = capture("ps -o stat= -p " .. pid .. " 2>/dev/null")
  return stat:match("%S") ~= nil and not stat:match("^%s*Z")
end

local function stop(pid)
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not alive(pid) then return end
    os.execute("sleep 0.05")
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
end

-- Start nginx on four free ports; a few tries, in case a port is taken
-- between the probe and the bind.  Returns its pid and the ports.
local function start_nginx(dir, cert, key)
  local template = assert(read_file(HERE .. "/nginx.conf"))
  for _ = 1, 5 do
    local port, tls_port, h2_port, slow_port = free_port(), free_port(), free_port(), free_port()
    local conf = template:gsub("@(%u[%u_%d]*)@", {
      PREFIX = dir, MODULES = helper.nginx_modules(), PORT = tostring(port), TLS_PORT = tostring(tls_port),
      H2_PORT = tostring(h2_port), SLOW_PORT = tostring(slow_port), CERT = cert, KEY = key })
    write_file(dir .. "/nginx.conf", conf)
    local cmd = ("exec nginx -p %s -c %s -e %s </dev/null >/dev/null 2>&1"):format(q(dir), q(dir .. "/nginx.conf"),
      q(dir .. "/error.log"))
    local pid = assert(helper.spawn(cmd)) -- stopped with us if we are killed
    for _ = 1, 100 do -- about 5 s
      if port_open(port) and port_open(tls_port) and port_open(h2_port) and port_open(slow_port) then
        return pid, { plain = port, tls = tls_port, h2 = h2_port, slow = slow_port }
      end
      if not alive(pid) then break end
      os.execute("sleep 0.05")
    end
    stop(pid)
  end
  error("nginx did not start:\n" .. (read_file(dir .. "/error.log") or ""))
end

local function make_certificate(dir)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    .. " -addext subjectAltName=DNS:localhost -keyout " .. q(key) .. " -out " .. q(cert) .. " >/dev/null 2>&1"))
  -- A bundle the size of the system's, which also trusts the test server:
  -- loading it is the cost the CA cache saves.
  local bundle = dir .. "/bundle.pem"
  write_file(bundle, (read_file("/etc/ssl/certs/ca-certificates.crt") or "") .. assert(read_file(cert)))
  return cert, key, bundle
end

-- Measuring ----------------------------------------------------------------

-- Best of `runs`: requests (or bodies) per second, and CPU seconds of ours.
local function best(runs, n, f)
  local rate, cpu = 0, 0
  for _ = 1, runs do
    collectgarbage()
    local t0, c0 = core.now(), os.clock()
    f()
    local dt, dc = core.now() - t0, os.clock() - c0
    if n / dt > rate then rate, cpu = n / dt, dc end
  end
  return rate, cpu
end

local function raw(args)
  local bin = assert(os.getenv("BENCH_RAW_CURL"), "BENCH_RAW_CURL is not set (run `make bench`)")
  local ua = require("vercel.marketplace.transport").user_agent("libcurl") -- the library's default
  local out = capture("BENCH_USER_AGENT=" .. q(ua) .. " " .. q(bin) .. " " .. args)
  local done, secs = out:match("^(%d+) ([%d.]+)")
  assert(done, "raw_curl failed: " .. out)
  return tonumber(done) / tonumber(secs)
end

local function installation(url, extra)
  local o = { token = TOKEN, base_url = url }
  for k, v in pairs(extra or {}) do o[k] = v end
  return marketplace.installation("icfg_bench", o)
end

-- Rounds alternate between the two sides, so that a change in the load of
-- the machine falls on both; the best round of each is kept.
local ROUNDS = 3

-- The items are made before the clock starts: the raw loop is handed its
-- request ready-made too, so only sending is timed on both sides.
local function lib_vs_raw(url, n, raw_args, send, opts)
  local inst = installation(url, opts)
  local items, body = {}, import_body(1)
  for i = 1, n do items[i] = { id = "db_" .. i, body = body } end
  local lib, ceiling = 0, 0
  for _ = 1, ROUNDS do
    lib = math.max(lib, (best(1, n, function() send(inst, items) end)))
    ceiling = math.max(ceiling, raw(raw_args))
  end
  inst:close()
  return lib, ceiling
end

local function sequential(inst, items)
  for i = 1, #items do assert(inst:import(items[i].id, items[i].body)) end
end

local function batch(inst, items)
  for _, r in ipairs(inst:import_many(items, { concurrency = 8 })) do assert(r.ok) end
end

local function encoders(n)
  local body = import_body(1)
  local enc, encode = core.encode, cjson.encode
  local ours, theirs = 0, 0
  for _ = 1, ROUNDS do
    ours = math.max(ours, (best(1, n, function() for _ = 1, n do enc("import", body) end end)))
    theirs = math.max(theirs, (best(1, n, function() for _ = 1, n do encode(body) end end)))
  end
  return ours, theirs
end

-- New TLS connections: every request opens one (the server closes it).
local function lib_tls(url, n, opts)
  local inst = installation(url, opts)
  local body = import_body(1)
  local rate, cpu = best(1, n, function()
    for i = 1, n do assert(inst:import("db_" .. i, body)) end
  end)
  inst:close()
  return rate, cpu / n * 1000
end

local function memory(url, n)
  local out = capture(q(LUA) .. " " .. q(HERE .. "/run.lua") .. " --memory " .. q(url) .. " " .. n)
  local rows = {}
  for a, b, c, d in out:gmatch("(%d+) (%d+) (%d+) (%d+)") do
    rows[#rows + 1] = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  end
  assert(#rows == 3, "memory run failed: " .. out)
  return rows
end

-- Report -------------------------------------------------------------------

local function line(fmt, ...) io.write(fmt:format(...), "\n") end

local function main()
  local N = tonumber(os.getenv("BENCH_N")) or 20000
  local MEM_N = tonumber(os.getenv("BENCH_REQUESTS")) or 100000
  local TLS_N = tonumber(os.getenv("BENCH_TLS_N")) or 200
  local dir = capture("mktemp -d /tmp/vercel-marketplace-bench.XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "", "mktemp failed")
  local cert, key, bundle = make_certificate(dir)
  local pid, ports = start_nginx(dir, cert, key)
  local ok, err = pcall(function()
    local url = "http://127.0.0.1:" .. ports.plain
    local put = url .. "/v1/installations/icfg_bench/resources/db_1"
    local json = assert(core.encode("import", import_body(1)))
    line("vercel-marketplace %s, %s, libcurl %s; nginx on 127.0.0.1 answering at once", core.VERSION, _VERSION,
      core.CURL_VERSION)
    line("body: %d bytes of JSON (every field of an import)", #json)
    line("")
    line("%-40s %12s %12s %8s", "imports/s (HTTP/1.1 unless said)", "library", "raw libcurl", "ratio")
    local ls, rs = lib_vs_raw(url, N, ("easy %s %d %s"):format(q(put), N, q(json)), sequential)
    line("%-40s %12.0f %12.0f %7.2fx", "sequential, " .. N .. " requests", ls, rs, ls / rs)
    local lb, rb = lib_vs_raw(url, N, ("multi %s %d %s 8"):format(q(put), N, q(json)), batch)
    line("%-40s %12.0f %12.0f %7.2fx", "8 in flight, " .. N .. " requests", lb, rb, lb / rb)
    local h2 = "https://localhost:" .. ports.h2
    local h2_put = h2 .. "/v1/installations/icfg_bench/resources/db_1"
    lb, rb = lib_vs_raw(h2, N, ("h2 %s %d %s 8 %s"):format(q(h2_put), N, q(json), q(cert)), batch, { ca_file = cert })
    line("%-40s %12.0f %12.0f %7.2fx", "8 in flight, HTTPS + HTTP/2", lb, rb, lb / rb)
    line("")
    -- The same against answers that take 1 ms: fewer requests, as each waits.
    local slow = "http://127.0.0.1:" .. ports.slow
    local slow_put = slow .. "/v1/installations/icfg_bench/resources/db_1"
    local SN, SB = math.max(1, math.floor(N / 20)), math.max(1, math.floor(N / 4))
    line("%-40s %12s %12s %8s", "imports/s, answers taking 1 ms", "library", "raw libcurl", "ratio")
    ls, rs = lib_vs_raw(slow, SN, ("easy %s %d %s"):format(q(slow_put), SN, q(json)), sequential)
    line("%-40s %12.0f %12.0f %7.2fx", "sequential, " .. SN .. " requests", ls, rs, ls / rs)
    lb, rb = lib_vs_raw(slow, SB, ("multi %s %d %s 8"):format(q(slow_put), SB, q(json)), batch)
    line("%-40s %12.0f %12.0f %7.2fx", "8 in flight, " .. SB .. " requests", lb, rb, lb / rb)
    line("")
    local E = N * 10
    local ours, theirs = encoders(E)
    line("%-40s %12s %12s %8s", "bodies/s", "core.encode", "cjson.encode", "ratio")
    line("%-40s %12.0f %12.0f %7.2fx", "validate+encode vs encode, " .. E .. " times", ours, theirs, ours / theirs)
    line("")
    line("%-40s %12s %12s %8s", "peak memory (kB)", "VmHWM", "VmRSS", "Lua heap")
    for _, r in ipairs(memory(url, MEM_N)) do
      line("%-40s %12d %12d %8d", ("after %d requests"):format(r[1]), r[2], r[3], r[4])
    end
    line("")
    local tls = "https://localhost:" .. ports.tls
    local tls_put = tls .. "/v1/installations/icfg_bench/resources/db_1"
    line("%-40s %12s %12s %8s", "new TLS connection per request", "cached CA", "no CA cache", "ratio")
    local lc, lc_cpu = lib_tls(tls, TLS_N, { ca_file = bundle })
    local lu, lu_cpu = lib_tls(tls, TLS_N, { ca_file = bundle, ca_path = "/etc/ssl/certs" })
    line("%-40s %12.0f %12.0f %7.2fx", "library requests/s", lc, lu, lc / lu)
    line("%-40s %12.2f %12.2f %7.2fx", "library CPU ms per request", lc_cpu, lu_cpu, lu_cpu / lc_cpu)
    local rc = raw(("tls %s %d %s %s cache"):format(q(tls_put), TLS_N, q(json), q(bundle)))
    local ru = raw(("tls %s %d %s %s nocache"):format(q(tls_put), TLS_N, q(json), q(bundle)))
    line("%-40s %12.0f %12.0f %7.2fx", "raw libcurl requests/s", rc, ru, rc / ru)
    line("(library: ca_file alone is cached -- our default; adding ca_path turns libcurl's cache off)")
  end)
  stop(pid)
  os.execute("rm -rf " .. q(dir))
  if not ok then error(err, 0) end
end

main()
