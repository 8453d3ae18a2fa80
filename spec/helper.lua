-- spec/helper.lua: what the specs share. Runs the emulator as a subprocess
-- (libcurl blocks, so the server cannot live in the test process) and
-- speaks raw HTTP through the curl command for requests our client would
-- refuse to send. Lua 5.4 has no sockets and no sleep: both go through the
-- shell, and every wait below is bounded.
--
--   local emu = helper.start_emulator({ token = "t" })  -- emu.url, .port, .pid, .token
--   emu:control(method, "/_emulator/...", value?)      -- status, decoded body
--   emu:api(method, "/v1/...", body?, headers?)        -- authorized API call
--   emu:requests(), emu:record(icfg, rid), emu:reset(), emu:stop()
--   helper.http(method, url, {headers, body, timeout}) -- raw HTTP via curl
local cjson = require "cjson"

local helper = {}

-- The repository root, from this file's own path, so specs run from any cwd.
local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  if src:sub(1, 1) ~= "/" then src = (os.getenv("PWD") or ".") .. "/" .. src end
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  return dir
end
helper.root = repo_root()
helper.emulator_bin = helper.root .. "/bin/vercel-marketplace-emulator"

-- Single-quote a string for sh.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.shell_quote = q

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
helper.read_file = read_file

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end
helper.write_file = write_file

-- Run a shell command; its stdout.
local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end
helper.capture = capture

-- os.execute(cmd) -> true or nil, on every version: Lua 5.1 and LuaJIT
-- (without 5.2 compat) return the raw wait status, 0 for success.
function helper.execute(cmd)
  local ok = os.execute(cmd)
  if ok == true or ok == 0 then return true end
  return nil
end
local execute = helper.execute

-- helper.popen_run(cmd) -> ok, output: stdout of `cmd` and whether it exited
-- 0. The exit status is echoed after the output, because Lua 5.1's and
-- LuaJIT's close of a popen file does not report it.
function helper.popen_run(cmd)
  local out = capture("( " .. cmd .. " ); echo \"<exit $?>\"")
  local text, code = out:match("^(.*)<exit (%d+)>\n?$")
  if not text then return false, out end
  return code == "0", text
end

function helper.sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

-- Wall-clock seconds with a fraction (os.time has whole seconds only).
function helper.now()
  return tonumber(capture("date +%s.%N")) or os.time()
end

-- Whether a process is still there (a zombie counts as gone).
function helper.alive(pid)
  local stat = capture("ps -o stat= -p " .. math.floor(pid) .. " 2>/dev/null")
  return stat:match("%S") ~= nil and not stat:match("^%s*Z")
end

-- This process (busted, or run_lua's interpreter) as /proc/self/stat names
-- it, read in-process: its pid and its start time (field 22), which tell it
-- apart from a later process given the same pid.
local function own_identity()
  local stat = read_file("/proc/self/stat") or ""
  local fields = {}
  for f in (stat:match("%) (.*)$") or ""):gmatch("%S+") do fields[#fields + 1] = f end
  return tonumber(stat:match("^(%d+)")), fields[20]
end

-- The watcher's shell: `alive PID START` holds while that very process runs
-- (not a zombie, not a newcomer with a recycled pid: pid_max is 32768 here,
-- and the shell itself reaps the server).  Builtins only: no fork a check.
local WATCHER = [[
alive() { want=$2; line=; read -r line < /proc/$1/stat || return 1
  set -- ${line##*) }; [ "$1" != Z ] && [ "${20}" = "$want" ]; }
start=; read -r line < /proc/$n/stat; set -- ${line##*) }; start=${20}
i=0
while [ $i -lt 7200 ] && alive %d %s && alive $n "$start"; do i=$((i+1)); sleep 0.5; done
alive $n "$start" && kill -TERM $n
]]

-- helper.spawn(cmd) -> pid: start `cmd`, a shell command line whose output is
-- already redirected and which ends in an `exec` (the pid is then the
-- server's own), in the background.  A watcher beside it checks twice a
-- second, for at most an hour, and sends the server TERM if this process
-- dies first (busted killed by a CI timeout, say), so no server outlives the
-- suite holding a port.  Both are known by pid and start time, so the
-- watcher never signals a stranger, and it ends within half a second of the
-- server being stopped by pid.
function helper.spawn(cmd)
  local pid, start = own_identity()
  local script = "(" .. cmd .. " & n=$!; echo $n; exec >/dev/null 2>&1 </dev/null\n"
      .. WATCHER:format(pid, start) .. ") &"
  return tonumber(capture("sh -c " .. q(script)))
end

-- The decoded JSON in `text`, or `text` itself when it is not JSON.
function helper.decode(text)
  if text == nil or text == "" then return text end
  local ok, v = pcall(cjson.decode, text)
  if ok then return v end
  return text
end

local function parse_headers(text)
  local headers, status_line = {}, nil
  -- Keep only the last block: curl writes one per response (100-continue...).
  for line in (text or ""):gmatch("[^\r\n]+") do
    if line:match("^HTTP/") then headers, status_line = {}, line
    else
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then headers[name:lower()] = value end
    end
  end
  return headers, status_line
end

-- helper.http(method, url, opts) -> status, body, headers
-- opts: headers = {name = value}, body = "raw", timeout = seconds (10).
-- When curl itself fails (dropped connection, short body, timeout) it
-- returns nil, "curl: (N) message", {curl_exit = N, body = partial body}.
function helper.http(method, url, opts)
  opts = opts or {}
  local out, hdr, err = os.tmpname(), os.tmpname(), os.tmpname()
  local cmd = { "curl -sS -X", q(method), "--max-time", tostring(opts.timeout or 10),
                "-o", q(out), "-D", q(hdr), "-w '%{http_code}'" }
  if url:match("^https:") then cmd[#cmd + 1] = "-k" end   -- test certificates
  for name, value in pairs(opts.headers or {}) do
    cmd[#cmd + 1] = "-H " .. q(name .. ": " .. value)
  end
  local bodyfile
  if opts.body then
    bodyfile = os.tmpname()
    write_file(bodyfile, opts.body)
    cmd[#cmd + 1] = "--data-binary @" .. q(bodyfile)
    if not (opts.headers and (opts.headers["Content-Type"] or opts.headers["content-type"])) then
      cmd[#cmd + 1] = "-H 'Content-Type: application/json'"
    end
  end
  cmd[#cmd + 1] = q(url)
  cmd[#cmd + 1] = "2>" .. q(err) .. "; echo \" $?\""
  local res = capture(table.concat(cmd, " "))
  local code, exit = res:match("(%d+)%s+(%d+)%s*$")
  local body, headers = read_file(out) or "", parse_headers(read_file(hdr))
  local errtext = (read_file(err) or ""):gsub("%s+$", "")
  for _, f in ipairs({ out, hdr, err, bodyfile }) do os.remove(f) end
  exit = tonumber(exit)
  if exit ~= 0 then
    return nil, errtext ~= "" and errtext or ("curl exit " .. tostring(exit)),
           { curl_exit = exit, body = body, headers = headers }
  end
  return tonumber(code), body, headers
end

local Emulator = {}
Emulator.__index = Emulator

-- emu:control(method, path, value?) -> status, decoded body (or raw text)
-- Every control request but a GET says it is JSON (the emulator refuses
-- what a web page could send cross-site), with a body or without.
function Emulator:control(method, path, value)
  local opts = {}
  if value ~= nil then opts.body = cjson.encode(value) end
  if method ~= "GET" then opts.headers = { ["Content-Type"] = "application/json" } end
  local status, body, headers = helper.http(method, self.url .. path, opts)
  return status, helper.decode(body), headers
end

-- emu:api(method, path, body_table_or_string?, headers?) -> status, decoded
-- body, headers: an authorized API request (path like "/v1/...").
function Emulator:api(method, path, body, headers)
  local h = { Authorization = "Bearer " .. self.token }
  for k, v in pairs(headers or {}) do h[k] = v end
  if type(body) == "table" then body = cjson.encode(body) end
  local status, text, hdrs = helper.http(method, self.url .. path, { headers = h, body = body })
  return status, helper.decode(text), hdrs
end

function Emulator:requests()
  local status, body = self:control("GET", "/_emulator/requests")
  assert(status == 200, "GET /_emulator/requests answered " .. tostring(status))
  return body.requests
end

function Emulator:reset()
  local status = self:control("POST", "/_emulator/reset")
  assert(status == 200, "POST /_emulator/reset answered " .. tostring(status))
end

-- The stored record including secrets, or nil.
function Emulator:record(icfg, rid)
  local function enc(s) return (s:gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end)) end
  local status, body = self:control("GET", "/_emulator/resources/" .. enc(icfg) .. "/" .. enc(rid))
  if status == 200 then return body end
end

function Emulator:stderr() return read_file(self.errfile) or "" end

-- emu:stop(signal?): signal the launcher (TERM), wait up to ~5 s, then KILL.
function Emulator:stop(signal)
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -" .. (signal or "TERM") .. " " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not helper.alive(self.pid) then break end
    helper.sleep(0.05)
  end
  if helper.alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  os.remove(self.outfile)
  os.remove(self.errfile)
end

-- helper.start_emulator(opts) -> emulator object
-- opts: token, state (file), tls_cert and tls_key (PEM files: serve HTTPS),
-- env ({NAME = value}), args ({...} extra arguments).
function helper.start_emulator(opts)
  opts = opts or {}
  local token = opts.token or "emulator-token"
  local outfile, errfile = os.tmpname(), os.tmpname()
  local args = { q(helper.emulator_bin), "--port 0", "--token", q(token) }
  if opts.state then args[#args + 1] = "--state " .. q(opts.state) end
  if opts.tls_cert then
    args[#args + 1] = "--tls-cert " .. q(opts.tls_cert) .. " --tls-key " .. q(opts.tls_key)
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = q(a) end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local inner = table.concat(env, " ") .. " exec " .. table.concat(args, " ")
      .. " >" .. q(outfile) .. " 2>" .. q(errfile) .. " </dev/null"
  local pid = helper.spawn(inner)
  assert(pid, "could not start the emulator")
  local emu = setmetatable({ pid = pid, token = token, outfile = outfile,
                             errfile = errfile }, Emulator)
  for _ = 1, 200 do                                  -- about 10 s
    local scheme, port = (read_file(outfile) or ""):match("listening on (https?)://127%.0%.0%.1:(%d+)")
    if port then
      emu.port = tonumber(port)
      emu.url = scheme .. "://127.0.0.1:" .. port
      return emu
    end
    if not helper.alive(pid) then break end
    helper.sleep(0.05)
  end
  local why = emu:stderr()
  emu:stop()
  error("emulator did not start:\n" .. why, 2)
end

-- A local port nothing listens on (for "connection refused" specs).
function helper.closed_port()
  for _ = 1, 50 do
    local port = math.random(20000, 60000)
    local probe = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null"
    if not execute(probe) then return port end
  end
  error("no closed port found in 50 tries")
end

-- The interpreter running the suite (lua5.4, lua5.3, lua5.1 or luajit):
-- LUA_CPATH points at the core built for it and for no other.
helper.lua_bin = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

-- helper.run_lua(code, env?) -> ok, output: run `code` in a fresh
-- interpreter of the suite's own version (LUA_PATH and LUA_CPATH inherited)
-- with extra environment variables; output is stdout and stderr together.
-- Bounded to 60 s.
function helper.run_lua(code, env)
  local file = os.tmpname()
  write_file(file, code)
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
  -- The braces take the shell's own "Killed" line, for a child that dies of
  -- a signal, into the output too.
  local cmd = "{ env " .. table.concat(vars, " ") .. " timeout 60 " .. helper.lua_bin .. " " .. q(file) .. "; } 2>&1"
  local ok, out = helper.popen_run(cmd)
  os.remove(file)
  return ok, out
end

-- helper.make_certificate() -> {cert = path, key = path, remove = fn}: a
-- self-signed certificate for DNS:localhost only, valid for a day. Being
-- self-signed, the certificate is also the CA file that trusts it.
function helper.make_certificate()
  local dir = os.tmpname()
  os.remove(dir)
  assert(execute("mkdir -m 700 " .. q(dir)))
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
      .. " -addext subjectAltName=DNS:localhost -keyout " .. q(key) .. " -out " .. q(cert)
      .. " >/dev/null 2>&1"
  assert(execute(cmd), "openssl could not make a certificate")
  return { cert = cert, key = key, dir = dir,
           remove = function() os.execute("rm -rf " .. q(dir)) end }
end

-- nginx ---------------------------------------------------------------------

-- The directory holding ngx_http_lua_module.so, looked for as the emulator
-- launcher does (the bench loads it too).
function helper.nginx_modules()
  for _, d in ipairs({ os.getenv("VERCEL_MARKETPLACE_NGINX_MODULES") or "", "/usr/share/nginx/modules",
                       "/usr/lib/nginx/modules" }) do
    if d ~= "" and read_file(d .. "/ngx_http_lua_module.so") then return d end
  end
  error("ngx_http_lua_module.so not found (set VERCEL_MARKETPLACE_NGINX_MODULES)")
end

-- Does something accept connections on 127.0.0.1:port?
local function listening(port)
  return execute("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. math.floor(port) .. "' 2>/dev/null") == true
end

local Nginx = {}
Nginx.__index = Nginx

function Nginx:error_log() return read_file(self.prefix .. "/error.log") or "" end

-- nginx:stop(): TERM, wait up to ~5 s, then KILL; the prefix is removed.
function Nginx:stop()
  if self.stopped then return end
  self.stopped = true
  execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not helper.alive(self.pid) then break end
    helper.sleep(0.05)
  end
  if helper.alive(self.pid) then execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  execute("rm -rf " .. q(self.prefix))
end

-- helper.start_nginx(http_body, opts?) -> {url, port, pid, prefix, stop,
-- error_log}: one nginx (one process, no daemon) in a fresh temporary prefix,
-- with lua-nginx-module loaded, lua_package_path on the repository's lua/
-- (plus opts.lua_path, a directory of extra modules) and lua_package_cpath on
-- the LuaJIT build of the core. `http_body` goes inside `http { }`; in it
-- `@PORT@` becomes the port picked and `@PREFIX@` the prefix. opts.env: names
-- of environment variables nginx passes to Lua (`env` directives), with
-- opts.env_values = {NAME = value} set for it; opts.workers: a master and that
-- many worker processes (forked from it). Bounded: 10 ports, ~5 s each.
function helper.start_nginx(http_body, opts)
  opts = opts or {}
  local prefix = os.tmpname()
  os.remove(prefix)
  assert(execute("mkdir -m 700 " .. q(prefix) .. " && mkdir " .. q(prefix .. "/tmp")))
  local modules = helper.nginx_modules()
  local cpath = os.getenv("VERCEL_MARKETPLACE_LUAJIT_CPATH") or (helper.root .. "/build/luajit/?.so")
  local lua_path = helper.root .. "/lua/?.lua;" .. helper.root .. "/lua/?/init.lua;"
  if opts.lua_path then lua_path = opts.lua_path .. "/?.lua;" .. lua_path end
  local envs = {}
  for _, name in ipairs(opts.env or {}) do envs[#envs + 1] = "env " .. name .. ";" end
  local vars = {}
  for k, v in pairs(opts.env_values or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local conf = table.concat({
      "load_module " .. modules .. "/ndk_http_module.so;",
      "load_module " .. modules .. "/ngx_http_lua_module.so;",
      opts.workers and ("master_process on; worker_processes " .. opts.workers .. ";")
        or "master_process off; worker_processes 1;",
      "daemon off;",
      "pid " .. prefix .. "/nginx.pid;", "error_log " .. prefix .. "/error.log info;",
      table.concat(envs, "\n"),
      "events { worker_connections 256; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path " .. prefix .. "/tmp/body;",
      "  proxy_temp_path " .. prefix .. "/tmp/proxy;",
      "  fastcgi_temp_path " .. prefix .. "/tmp/fastcgi;",
      "  uwsgi_temp_path " .. prefix .. "/tmp/uwsgi;",
      "  scgi_temp_path " .. prefix .. "/tmp/scgi;",
      "  lua_package_path '" .. lua_path .. ";';",
      "  lua_package_cpath '" .. cpath .. ";;';",
      (http_body:gsub("@PORT@", tostring(port)):gsub("@PREFIX@", (prefix:gsub("%%", "%%%%")))),
      "}", "" }, "\n")
    write_file(prefix .. "/nginx.conf", conf)
    os.remove(prefix .. "/error.log")
    local inner = "exec env -u LUA_PATH -u LUA_CPATH -u LUA_INIT " .. table.concat(vars, " ")
        .. " " .. q(os.getenv("VERCEL_MARKETPLACE_NGINX") or "nginx") .. " -e " .. q(prefix .. "/error.log") .. " -p " .. q(prefix .. "/") .. " -c nginx.conf"
        .. " >" .. q(prefix .. "/stdout") .. " 2>&1 </dev/null"
    local pid = helper.spawn(inner)
    assert(pid, "could not start nginx")
    local self = setmetatable({ pid = pid, port = port, prefix = prefix,
                                url = "http://127.0.0.1:" .. port }, Nginx)
    -- nginx writes its pid file only once it holds the port (init_by_lua
    -- runs before that), so a listener without our pid file is not ours.
    for _ = 1, 100 do                               -- about 5 s
      if not helper.alive(pid) then break end
      if tonumber(read_file(prefix .. "/nginx.pid") or "") == pid and listening(port) then return self end
      helper.sleep(0.05)
    end
    local log = self:error_log() .. (read_file(prefix .. "/stdout") or "")
    if helper.alive(pid) then execute("kill -KILL " .. pid .. " 2>/dev/null") end
    if not log:find("Address already in use", 1, true) then
      execute("rm -rf " .. q(prefix))
      error("nginx did not start:\n" .. log, 2)
    end
  end
  execute("rm -rf " .. q(prefix))
  error("nginx did not start on any of 10 random ports", 2)
end

-- DNS for nginx's `resolver`: a stub on 127.0.0.1 answering every A query
-- with 127.0.0.1 (and no address for other types), so that a host name like
-- `localhost` -- which a test certificate names -- resolves inside nginx.
-- SILENT=1: names whose first label starts with "nx" do not exist
-- (NXDOMAIN) and every other query goes unanswered (a resolver that never
-- answers).  perl-base is part of every Debian system; the stub exits after
-- 10 minutes.
local DNS_STUB = [[
use strict; use IO::Socket::INET;
my $silent = $ENV{SILENT};
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp') or die "socket: $!";
$| = 1; print "port ", $s->sockport, "\n";
my $end = time + 600;
while (time < $end) {
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  next unless select(my $rout = $rin, undef, undef, 1);
  my $q; my $peer = $s->recv($q, 512); next unless defined $peer && length($q) > 14;
  if ($silent) {
    next unless substr($q, 13, 2) eq 'nx';
    $s->send(pack('n6', unpack('n', $q), 0x8183, 1, 0, 0, 0) . substr($q, 12), 0, $peer);
    next;
  }
  my $o = 12; while ($o < length $q) { my $l = ord substr($q, $o, 1); $o += 1 + $l; last unless $l; }
  next if $o + 4 > length $q;
  my $qtype = unpack 'n', substr($q, $o, 2);
  my $an = $qtype == 1 ? 1 : 0;
  my $r = pack('n6', unpack('n', $q), 0x8180, 1, $an, 0, 0) . substr($q, 12, $o + 4 - 12);
  $r .= pack('n3Nn', 0xC00C, 1, 1, 60, 4) . pack('C4', 127, 0, 0, 1) if $an;
  $s->send($r, 0, $peer);
}
]]

-- helper.start_dns(opts?) -> {port, pid, stop}; opts.silent: the stub
-- that answers only "nx..." names, with NXDOMAIN.
function helper.start_dns(opts)
  local script, out = os.tmpname(), os.tmpname()
  write_file(script, DNS_STUB)
  local env = opts and opts.silent and "SILENT=1 " or ""
  local pid = helper.spawn(env .. "exec perl " .. q(script) .. " >" .. q(out) .. " 2>&1 </dev/null")
  assert(pid, "could not start the DNS stub")
  local dns = { pid = pid }
  function dns.stop()
    execute("kill -TERM " .. pid .. " 2>/dev/null")
    os.remove(script)
    os.remove(out)
  end
  for _ = 1, 100 do
    local port = (read_file(out) or ""):match("port (%d+)")
    if port then
      dns.port = tonumber(port)
      return dns
    end
    if not helper.alive(pid) then break end
    helper.sleep(0.05)
  end
  local why = read_file(out) or ""
  dns.stop()
  error("DNS stub did not start: " .. why, 2)
end

-- helper.use_emulator(opts) -> emu: inside a describe block, one emulator for
-- the block: started before its first test, reset before each test, stopped
-- after the last.  The handle answers like the emulator (emu.url,
-- emu:control(...)) once it has started.  opts.tls: serve HTTPS with a test
-- certificate made for the block (emu.certificate, as make_certificate
-- returns it; emu.https_url names localhost, the host it is for).
function helper.use_emulator(opts)
  -- busted's block functions live in the spec's environment, not ours.
  local busted = require "busted"
  local emu, real, cert = {}, nil, nil
  busted.lazy_setup(function()
    local o = opts or {}
    if o.tls then
      cert = helper.make_certificate()
      o = setmetatable({ tls_cert = cert.cert, tls_key = cert.key }, { __index = o })
    end
    real = helper.start_emulator(o)
    if cert then real.certificate, real.https_url = cert, (real.url:gsub("127%.0%.0%.1", "localhost")) end
    setmetatable(emu, { __index = real })
  end)
  busted.before_each(function()
    real:reset()
  end)
  busted.lazy_teardown(function()
    if real then real:stop() end
    if cert then cert.remove() end
  end)
  return emu
end

-- helper.use_temp_files() -> file: inside a describe block, file(value)
-- writes value (a string, or a table as JSON) to a new temporary file and
-- returns its path; every such file is removed after each test.
function helper.use_temp_files()
  local busted = require "busted"
  local files = {}
  busted.after_each(function()
    for _, f in ipairs(files) do os.remove(f) end
    files = {}
  end)
  return function(value)
    local path = os.tmpname()
    write_file(path, type(value) == "string" and value or cjson.encode(value))
    files[#files + 1] = path
    return path
  end
end

return helper
