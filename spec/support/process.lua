-- spec/support/process.lua: processes and files for the specs -- the
-- shell's quoting, files, commands and their output, sleeping, the clock,
-- starting a server with a watcher (spawn), the one stop sequence (stop) and
-- the one wait (wait_for), a child interpreter (run_lua), temporary files.
-- Installs its functions into the helper table (spec/helper.lua).
local cjson = require "cjson"

return function(helper)

-- The repository root, from this file's own path, so specs run from any cwd.
local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  if src:sub(1, 1) ~= "/" then src = (os.getenv("PWD") or ".") .. "/" .. src end
  local dir = src:match("^(.*)/spec/") or "."
  return dir
end
helper.root = repo_root()

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


-- helper.stop(pid, signal?): the one stop sequence: `signal` (TERM), up to
-- ~5 s for the process to go, then KILL.
function helper.stop(pid, signal)
  execute("kill -" .. (signal or "TERM") .. " " .. math.floor(pid) .. " 2>/dev/null")
  helper.wait_for(function() return not helper.alive(pid) end, 5)
  if helper.alive(pid) then execute("kill -KILL " .. math.floor(pid) .. " 2>/dev/null") end
end

-- helper.wait_for(check, seconds) -> check's first truthy value, or nil when
-- `seconds` pass first: the one wait, polling every 50 ms.
function helper.wait_for(check, seconds)
  for _ = 1, math.max(1, math.ceil(seconds / 0.05)) do
    local v = check()
    if v then return v end
    helper.sleep(0.05)
  end
  return nil
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


end
