-- spec/support/emulator.lua: the emulator as a subprocess (libcurl blocks,
-- so the server cannot live in the test process), a block's emulator
-- (use_emulator) and test certificates.
local cjson = require "cjson"

return function(helper)
local q, read_file, execute = helper.shell_quote, helper.read_file, helper.execute

helper.emulator_bin = helper.root .. "/bin/vercel-marketplace-emulator"

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
  helper.stop(self.pid, signal)
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

end
