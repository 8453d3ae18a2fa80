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
--
-- The parts live in spec/support/, one concern each: process.lua (files,
-- commands, spawn, the one stop sequence and the one wait, run_lua),
-- http.lua (raw HTTP via curl), emulator.lua, nginx.lua, dns.lua.  Each
-- installs its functions here, so specs use one table.
local helper = {}

for _, part in ipairs({ "process", "http", "emulator", "nginx", "dns" }) do
  require("support." .. part)(helper)
end

return helper
