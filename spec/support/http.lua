-- spec/support/http.lua: raw HTTP through the curl command, for requests
-- our client would refuse to send, and a port nothing listens on.
local cjson = require "cjson"

return function(helper)
local q, read_file, write_file, capture, execute = helper.shell_quote, helper.read_file, helper.write_file,
  helper.capture, helper.execute

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


-- A local port nothing listens on (for "connection refused" specs).
function helper.closed_port()
  for _ = 1, 50 do
    local port = math.random(20000, 60000)
    local probe = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null"
    if not execute(probe) then return port end
  end
  error("no closed port found in 50 tries")
end

end
