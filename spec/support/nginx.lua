-- spec/support/nginx.lua: a bare nginx with lua-nginx-module in a fresh
-- prefix, on a free port on 127.0.0.1.
return function(helper)
local q, read_file, write_file, execute = helper.shell_quote, helper.read_file, helper.write_file, helper.execute

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
  helper.stop(self.pid)
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

end
