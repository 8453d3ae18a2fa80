-- bin/vercel-marketplace, run as a subprocess against the emulator (with
-- the interpreter busted runs under, and the tree's LUA_PATH/LUA_CPATH).
local cjson = require "cjson"
local helper = require "helper"

local q = helper.shell_quote
local LUA = arg and arg[-1] or "lua5.4"
local BIN = helper.root .. "/bin/vercel-marketplace"
local TOKEN = "cli-spec-token-0123456789"
local ICFG = "icfg_cli"

local write = helper.write_file

-- run(args, opts) -> code, stdout, stderr.  opts.env: extra variables
-- (VERCEL_* are cleared first), opts.stdin: text for standard input.
local function run(args, opts)
  opts = opts or {}
  local out, err, input = os.tmpname(), os.tmpname(), os.tmpname()
  write(input, opts.stdin or "")
  local vars = {}
  for k, v in pairs(opts.env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local cmd = "env -u VERCEL_TOKEN -u VERCEL_API_URL -u VERCEL_INSTALLATION_ID " .. table.concat(vars, " ")
      .. " timeout 60 " .. q(LUA) .. " " .. q(BIN) .. " " .. table.concat(words, " ")
      .. " <" .. q(input) .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $?"
  local p = assert(io.popen(cmd, "r"))
  local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local stdout, stderr = helper.read_file(out), helper.read_file(err)
  for _, f in ipairs({ out, err, input }) do os.remove(f) end
  return code, stdout, stderr
end

-- start(args, opts) -> job: the command in the background, with SIGINT
-- at its default as a terminal's foreground job has it (sh starts its
-- background jobs with SIGINT ignored); opts.feed: a shell command whose
-- output is its standard input.  job:interrupt() sends SIGINT and
-- waits for the end (KILL after 5 s): code, stdout, stderr, and the seconds
-- from the signal to the end.
local function start(args, opts)
  opts = opts or {}
  local out, err, pidf, codef = os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()
  local vars = {}
  for k, v in pairs(opts.env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local job = (opts.feed and ("( " .. opts.feed .. " ) | ") or "") .. "env -u VERCEL_TOKEN -u VERCEL_API_URL -u VERCEL_INSTALLATION_ID " .. table.concat(vars, " ")
      .. " env --default-signal=INT " .. q(LUA) .. " " .. q(BIN) .. " " .. table.concat(words, " ")
      .. (opts.feed and "" or " </dev/null") .. " >" .. q(out) .. " 2>" .. q(err) .. " & echo $! >" .. q(pidf) .. "; wait $!; echo $? >" .. q(codef)
  os.execute("sh -c " .. q(job) .. " >/dev/null 2>&1 &")
  local pid
  for _ = 1, 100 do
    pid = tonumber(helper.read_file(pidf) or "")
    if pid then break end
    helper.sleep(0.05)
  end
  assert(pid, "the command did not start")
  return { pid = pid, interrupt = function()
    local ms = helper.capture(("kill -INT %d; s=$(date +%%s%%N); i=0; while [ ! -s %s ] && [ $i -lt 250 ]; do"
      .. " sleep 0.02; i=$((i+1)); done; e=$(date +%%s%%N); [ -s %s ] || kill -KILL %d; echo $(( (e - s) / 1000000 ))")
      :format(pid, q(codef), q(codef), pid))
    for _ = 1, 20 do
      if (helper.read_file(codef) or "") ~= "" then break end
      helper.sleep(0.05)
    end
    local code = tonumber(helper.read_file(codef) or "")
    local stdout, stderr = helper.read_file(out), helper.read_file(err)
    for _, f in ipairs({ out, err, pidf, codef }) do os.remove(f) end
    return code, stdout, stderr, tonumber(ms) / 1000
  end }
end

local function body(i)
  return { id = ("res_%02d"):format(i), productId = "postgres", name = "db-" .. i, status = "ready",
    metadata = { n = i } }
end

local function bodies(from, to)
  local list = {}
  for i = from, to do list[#list + 1] = body(i) end
  return list
end

local function writes(requests)
  local n = 0
  for _, r in ipairs(requests) do if r.method ~= "GET" then n = n + 1 end end
  return n
end

describe("vercel-marketplace (command line)", function()
  local emu, env = helper.use_emulator({ token = TOKEN }), nil
  local file = helper.use_temp_files()

  before_each(function()
    env = { VERCEL_API_URL = emu.url, VERCEL_TOKEN = TOKEN, VERCEL_INSTALLATION_ID = ICFG }
  end)

  local function partner_ids()
    local status, list = emu:api("GET", "/v1/installations/" .. ICFG .. "/resources")
    assert.equals(200, status)
    local ids = {}
    for _, r in ipairs(list.resources) do ids[#ids + 1] = r.partnerId end
    table.sort(ids)
    return ids
  end

  local function seed(list)
    for _, b in ipairs(list) do
      local copy = {}
      for k, v in pairs(b) do if k ~= "id" then copy[k] = v end end
      assert.equals(200, (emu:api("PUT", "/v1/installations/" .. ICFG .. "/resources/" .. b.id, copy)))
    end
    emu:control("DELETE", "/_emulator/requests")
  end

  describe("sync", function()
    it("imports 50 resources and prints a summary, silent on a piped stderr", function()
      local code, out, err = run({ "sync", file(bodies(1, 50)), "--concurrency", "4" }, { env = env })
      assert.equals(0, code, err)
      assert.equals("imported 50, deleted 0, failed 0\n", out)
      assert.equals("", err)
      assert.equals(50, #partner_ids())
      assert.equals(50, writes(emu:requests()))
      assert.same({ n = 7 }, emu:record(ICFG, "res_07").metadata)
    end)

    it("--prune deletes the resources not in the file and keeps the others", function()
      seed(bodies(1, 5))
      local code, out, err = run({ "sync", "--prune", file(bodies(3, 7)) }, { env = env })
      assert.equals(0, code, err)
      assert.equals("imported 5, deleted 2, failed 0\n", out)
      assert.same({ "res_03", "res_04", "res_05", "res_06", "res_07" }, partner_ids())
      local deletes = {}
      for _, r in ipairs(emu:requests()) do
        if r.method == "DELETE" then deletes[#deletes + 1] = r.path:match("[^/]+$") end
      end
      table.sort(deletes)
      assert.same({ "res_01", "res_02" }, deletes)
    end)

    it("--dry-run sends no write and says what would change", function()
      seed(bodies(1, 3))
      local code, out, err = run({ "sync", file(bodies(2, 4)), "--prune", "--dry-run" }, { env = env })
      assert.equals(0, code, err)
      assert.truthy(out:find("would import 3, delete 1", 1, true), out)
      assert.truthy(out:find("- res_01\n", 1, true))
      assert.truthy(out:find("+ res_04\n", 1, true))
      local requests = emu:requests()
      assert.equals(1, #requests)               -- the list, nothing else
      assert.equals("GET", requests[1].method)
      assert.same({ "res_01", "res_02", "res_03" }, partner_ids())
      -- Without --prune nothing at all is sent, and no token is needed.
      emu:control("DELETE", "/_emulator/requests")
      code, out = run({ "sync", file(bodies(1, 2)), "--dry-run" })
      assert.equals(0, code)
      assert.truthy(out:find("would import 2, delete 0", 1, true))
      assert.equals(0, #emu:requests())
    end)

    it("refuses a file with any invalid item: exit 2, every problem by item and path, nothing sent", function()
      local list = bodies(1, 4)
      list[2].status = "on fire"
      list[3].billingPlan = { id = "p", type = "prepayment", name = "n", details = { { value = "x" } } }
      list[3].zz = true
      list[4].id = nil
      list[5] = list[1]
      local code, out, err = run({ "sync", "--prune", file(list) }, { env = env })
      assert.equals(2, code)
      assert.equals("", out)
      for _, line in ipairs({
        '5 problems; nothing was sent',
        'item 2 (id "res_02"): status: must be one of',
        'item 3 (id "res_03"): billingPlan.details[1].label: is required',
        'item 3 (id "res_03"): zz: unknown field',
        'item 4: id: is required',
        'item 5 (id "res_01"): id: duplicate id (also item 1)',
      }) do
        assert.truthy(err:find(line, 1, true), line .. "\n" .. err)
      end
      assert.equals(0, #emu:requests())
    end)

    it("--prune refuses an empty array unless --allow-empty says so", function()
      seed(bodies(1, 2))
      local code, out, err = run({ "sync", "--prune", file("[]") }, { env = env })
      assert.equals(2, code)
      assert.equals("", out)
      assert.truthy(err:find("holds no resources, so --prune would delete every resource", 1, true), err)
      assert.truthy(err:find("--allow-empty", 1, true), err)
      assert.equals(0, #emu:requests())
      -- A dry run may show what would go; --allow-empty does it.
      code, out = run({ "sync", "--prune", "--dry-run", file("[]") }, { env = env })
      assert.equals(0, code)
      assert.truthy(out:find("would import 0, delete 2", 1, true), out)
      code, out, err = run({ "sync", "--prune", "--allow-empty", file("[]") }, { env = env })
      assert.equals(0, code, err)
      assert.equals("imported 0, deleted 2, failed 0\n", out)
      assert.same({}, partner_ids())
    end)

    it("reads - from standard input", function()
      local code, out, err = run({ "sync", "-" }, { env = env, stdin = cjson.encode(bodies(1, 3)) })
      assert.equals(0, code, err)
      assert.equals("imported 3, deleted 0, failed 0\n", out)
      assert.same({ "res_01", "res_02", "res_03" }, partner_ids())
    end)

    it("sends an empty array of the file as [] and an empty object as {}", function()
      local text = '[{"id":"res_01","productId":"p","name":"n","status":"ready",'
          .. '"metadata":{"regions":[ ],"opts":{}}}]'
      local code, _, err = run({ "sync", "-" }, { env = env, stdin = text })
      assert.equals(0, code, err)
      local body = emu:requests()[1].body
      assert.truthy(body:find('"regions":[]', 1, true), body)
      assert.truthy(body:find('"opts":{}', 1, true), body)
    end)

    it("exits 1 when an item fails, naming it, and imports the others", function()
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = "/v1/installations/" .. ICFG .. "/resources/res_02",
        status = 409, error = { code = "conflict", message = "busy" } })
      local code, out, err = run({ "sync", file(bodies(1, 3)) }, { env = env })
      assert.equals(1, code)
      assert.equals("imported 2, deleted 0, failed 1\n", out)
      assert.truthy(err:find("failed to import res_02: http error", 1, true), err)
      assert.truthy(err:find("[conflict]", 1, true), err)
      assert.same({ "res_01", "res_03" }, partner_ids())
    end)

    it("--json: one object with counts, ids and failures", function()
      seed(bodies(9, 9))
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = ".*/res_01", status = 400,
        error = { code = "bad_request", message = "no" } })
      local code, out = run({ "--json", "sync", file(bodies(1, 2)), "--prune" }, { env = env })
      assert.equals(1, code)
      local v = cjson.decode(out)
      assert.same({ false, false, 1, 1, 1 }, { v.ok, v.dry_run, v.imported, v.deleted, v.failed })
      assert.same({ "res_02" }, v.imports)
      assert.same({ "res_09" }, v.deletes)
      assert.equals("res_01", v.failures[1].id)
      assert.equals("import", v.failures[1].op)
      assert.equals(400, v.failures[1].error.status)
      assert.equals("bad_request", v.failures[1].error.code)
      -- Empty lists are arrays, not objects.
      code, out = run({ "--json", "sync", file(bodies(1, 1)) }, { env = env })
      assert.equals(0, code)
      assert.truthy(out:find('"deletes":[]', 1, true), out)
      assert.truthy(out:find('"failures":[]', 1, true), out)
    end)
  end)

  describe("one resource", function()
    -- Lua's table order differs from one run to the next (string hashes are
    -- seeded per process): --json sorts object keys, so exports diff.
    it("--json prints the same bytes every run", function()
      local b = body(1)
      b.id, b.metadata = nil, {}
      for i = 1, 30 do b.metadata[("key_%02d"):format(i)] = "v" .. i end
      assert.equals(0, (run({ "import", "res_01", file(b) }, { env = env })))
      local first
      for run_ = 1, 4 do
        for _, args in ipairs({ { "list", "--json" }, { "get", "res_01", "--json" } }) do
          local code, out = run(args, { env = env })
          assert.equals(0, code, out)
          first = first or {}
          first[args[1]] = first[args[1]] or out
          assert.equals(first[args[1]], out, args[1] .. ", run " .. run_)
        end
      end
      assert.truthy(first.get:find('"key_01":"v1","key_02":"v2","key_03":"v3"', 1, true), first.get)
    end)

    it("import, update, get, list, secrets, delete", function()
      local b = body(1)
      b.id = nil
      local code, out, err = run({ "import", "res_01", file(b) }, { env = env })
      assert.equals(0, code, err)
      assert.equals("imported res_01: db-1\n", out)
      code, out = run({ "update", "res_01", "-" }, { env = env, stdin = '{"status":"suspended"}' })
      assert.equals(0, code)
      assert.equals("suspended", emu:record(ICFG, "res_01").status)
      code, out = run({ "get", "res_01" }, { env = env })
      assert.equals(0, code)
      assert.truthy(out:find("status%s+suspended"), out)
      code, out = run({ "list" }, { env = env })
      assert.equals(0, code)
      assert.truthy(out:find("^res_01%s+suspended%s+db%-1\n$"), out)
      code, out = run({ "secrets", "res_01", file({ { name = "URL", value = "postgres://secret" } }) }, { env = env })
      assert.equals(0, code)
      assert.is_nil(out:find("postgres://", 1, true))
      assert.equals("postgres://secret", emu:record(ICFG, "res_01").secrets[1].value)
      code = run({ "secrets", "res_01", file({ { name = "PW", value = "p" } }), "--partial" }, { env = env })
      assert.equals(0, code)
      assert.equals(2, #emu:record(ICFG, "res_01").secrets)
      code, out = run({ "delete", "res_01" }, { env = env })
      assert.equals(0, code)
      assert.equals("deleted res_01\n", out)
      assert.same({}, partner_ids())
    end)

    it("--json output decodes; an empty list is []", function()
      local code, out = run({ "list", "--json" }, { env = env })
      assert.equals(0, code)
      assert.equals('{"ok":true,"resources":[]}\n', out)
      seed({ body(1) })
      code, out = run({ "get", "res_01", "--json" }, { env = env })
      assert.equals(0, code)
      local v = cjson.decode(out)
      assert.is_true(v.ok)
      assert.equals("res_01", v.resource.id)
      code, out = run({ "--json", "get", "nope" }, { env = env })
      assert.equals(1, code)
      v = cjson.decode(out)
      assert.is_false(v.ok)
      assert.same({ "http", 404, "not_found" }, { v.error.kind, v.error.status, v.error.code })
      assert.truthy(v.error.request_id)
    end)

    it("a server failure exits 1", function()
      emu:control("POST", "/_emulator/faults", { method = "GET", status = 500, count = 3 })
      local code, _, err = run({ "get", "res_01" }, { env = env })
      assert.equals(1, code)
      assert.truthy(err:find("500", 1, true), err)
      local port = helper.closed_port()
      code, _, err = run({ "list", "--base-url", "http://127.0.0.1:" .. port }, { env = env })
      assert.equals(1, code)
      assert.truthy(err:find("transport error", 1, true), err)
    end)

    it("an invalid body exits 2 and sends nothing", function()
      local code, out, err = run({ "import", "res_01", file({ name = 42, zz = true }) }, { env = env })
      assert.equals(2, code)
      assert.equals("", out)
      assert.truthy(err:find("productId: is required", 1, true), err)
      assert.truthy(err:find("name: expected string, got number", 1, true), err)
      code = run({ "get", ".." }, { env = env })
      assert.equals(2, code)
      assert.equals(0, #emu:requests())
    end)
  end)

  describe("settings", function()
    it("falls back on VERCEL_* and lets options override them", function()
      seed({ body(1) })
      local code, out = run({ "list" }, { env = env })
      assert.equals(0, code)
      assert.truthy(out:find("res_01", 1, true))
      -- Options before or after the command beat the environment.
      local wrong = { VERCEL_API_URL = "http://127.0.0.1:" .. helper.closed_port(), VERCEL_TOKEN = "wrong-token-xxxxxxxx",
        VERCEL_INSTALLATION_ID = "icfg_other" }
      code, out = run({ "--base-url", emu.url, "list", "--token=" .. TOKEN, "--installation", ICFG }, { env = wrong })
      assert.equals(0, code)
      assert.truthy(out:find("res_01", 1, true))
      local requests = emu:requests()
      assert.equals("/v1/installations/icfg_cli/resources", requests[#requests].path)
      assert.equals("Bearer [token]", requests[#requests].headers.authorization)
    end)

    it("a missing token or installation is a usage error, nothing sent", function()
      local code, _, err = run({ "list" }, { env = { VERCEL_API_URL = emu.url, VERCEL_INSTALLATION_ID = ICFG } })
      assert.equals(2, code)
      assert.truthy(err:find("no token", 1, true))
      code, _, err = run({ "list" }, { env = { VERCEL_API_URL = emu.url, VERCEL_TOKEN = TOKEN } })
      assert.equals(2, code)
      assert.truthy(err:find("no installation", 1, true))
      assert.equals(0, #emu:requests())
    end)

    it("validate works offline, without a token", function()
      local code, out = run({ "validate", "import", file(body(1)) })
      assert.equals(2, code)             -- `id` is not an Import body field
      code, out = run({ "validate", "import", file(bodies(1, 3)) })
      assert.equals(0, code)
      assert.equals("valid: 3 import bodies\n", out)
      code, out = run({ "validate", "update", "-", "--json" }, { stdin = '{"notification":"","bogus":1}' })
      assert.equals(2, code)
      local v = cjson.decode(out)
      assert.same({ { path = "bogus", message = "unknown field" } }, v.error.errors)
      assert.equals(0, #emu:requests())
    end)

    it("usage errors exit 2", function()
      for _, args in ipairs({ {}, { "frobnicate" }, { "get" }, { "get", "a", "b" }, { "list", "--prune" },
        { "sync", "x.json", "--concurrency", "0" }, { "validate", "secrets", "x" }, { "list", "--bogus" },
        { "list", "--token" }, { "list", "--base-url", "ftp://nowhere" } }) do
        local code, out, err = run(args, { env = env })
        assert.equals(2, code, table.concat(args, " "))
        assert.equals("", out)
        assert.truthy(err:find("^vercel%-marketplace: "), err)
      end
      assert.equals(0, #emu:requests())
    end)

    it("never prints the token, even on failures", function()
      local port = helper.closed_port()
      local path = file(bodies(1, 2))
      emu:control("POST", "/_emulator/faults", { status = 400, count = 2,
        error = { code = "bad_request", message = "token " .. TOKEN .. " echoed by a server" } })
      local runs = {
        { { "sync", path, "--json" }, env },
        { { "get", "x", "--json", "--token", TOKEN }, env },
        { { "list", "--base-url", "http://127.0.0.1:" .. port }, env },
        { { "list", "--json", "--base-url", "http://127.0.0.1:" .. port }, env },
        { { "list", "--token", TOKEN, "--base-url", "ftp://nowhere" }, env },
        { { "list", "--token", TOKEN, "--installation", "" }, env },
        { { "list", TOKEN }, env },
        { { "import", "x", path, "--json" }, env },
        { { "--help" }, env },
        { { "sync", "--help" }, env },
        { { "list", "--json" }, { VERCEL_API_URL = emu.url, VERCEL_TOKEN = TOKEN .. "x", VERCEL_INSTALLATION_ID = "i" } },
      }
      for _, r in ipairs(runs) do
        local code, out, err = run(r[1], { env = r[2] })
        assert.is_number(code)
        assert.is_nil((out .. err):find(TOKEN, 1, true), table.concat(r[1], " ") .. "\n" .. out .. err)
      end
    end)
  end)

  describe("token scrubbing", function()
    local MARK = "TOKEN_MARKER_abc123XYZ"

    -- Neither the token nor a recognisable piece of it, in any form.
    local function assert_hidden(secret, args, out, err)
      local all = out .. err
      for _, s in ipairs({ secret, secret:gsub('"', '\\"'), secret:sub(-9) }) do
        assert.is_nil(all:find(s, 1, true), table.concat(args, " ") .. "\n" .. all)
      end
    end

    it("a usage error never quotes a stray argument, even a short one", function()
      local no_token = { VERCEL_API_URL = emu.url, VERCEL_INSTALLATION_ID = ICFG }
      for _, args in ipairs({
        { "--installation", "--token", MARK, "list" },
        { "--installation", "--token", MARK, "list", "--json" },
        { "--tokn", MARK, "list" },
        { "--json", "--tokn", MARK, "list" },
        { "--tokn=" .. MARK, "list" },
        { "list", "--" .. MARK },
        { "list", "--token" .. MARK },
        { "list", "-" .. MARK },
        { "help", MARK },
        { MARK },
        { "--tokn", "Zq7xyQ", "list" },
      }) do
        local code, out, err = run(args, { env = no_token })
        assert.equals(2, code, table.concat(args, " "))
        assert_hidden(MARK, args, out, err)
        assert.is_nil((out .. err):find("Zq7xyQ", 1, true), out .. err)
        assert.truthy(err:find("^vercel%-marketplace: "), err)
        if args[#args] == "--json" or args[1] == "--json" then
          assert.equals("usage", cjson.decode(out).error.kind)
        end
      end
      assert.equals(0, #emu:requests())
    end)

    it("says which argument is wrong and what was expected", function()
      local code, _, err = run({ "--tokn", MARK, "list" })
      assert.equals(2, code)
      assert.truthy(err:find("unknown command (argument 2); expected one of: import, update, get", 1, true), err)
      code, _, err = run({ "--installation", "--token", MARK, "list" })
      assert.equals(2, code)
      assert.truthy(err:find("option --installation (argument 1) needs a value", 1, true), err)
      code, _, err = run({ "list", "--bogus" })
      assert.equals(2, code)
      assert.truthy(err:find("argument 2 is not an option of 'list'", 1, true), err)
      code, _, err = run({ "list", "--prune" })
      assert.equals(2, code)
      assert.truthy(err:find("'list' takes no option --prune (usage: vercel-marketplace list [options])", 1, true), err)
    end)

    it("hides a token holding a quote in --json output too", function()
      local quoted = 'TOKEN"MARKER_abc123XYZ'
      local runs = {
        { "--json", quoted },
        { "--json", "validate", "import", quoted },
        { "validate", "import", quoted, "--json" },
        { "--json", "validate", "import", "--token=" .. quoted, quoted },
      }
      for _, args in ipairs(runs) do
        local code, out, err = run(args, { env = { VERCEL_TOKEN = quoted } })
        assert.equals(2, code, table.concat(args, " "))
        assert_hidden(quoted, args, out, err)
        assert.equals("usage", cjson.decode(out).error.kind)
      end
    end)
  end)

  describe("secrets in output", function()
    -- `short` is a prefix of `long`: cut shortest first, long's tail would show.
    local long, short, preview = "pg-password-0123456789", "pg-password", "preview-only-value"

    local function echoing(path, count)
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = path, status = 400, count = count,
        error = { code = "bad_request", message = "no", limit = { echo = long, also = { short, "x" .. long, preview } } } })
    end

    local function assert_cut(limit, text)
      assert.same({ echo = "[secret]", also = { "[secret]", "x[secret]", "[secret]" } }, limit)
      for _, s in ipairs({ short, "0123456789", preview }) do assert.is_nil(text:find(s, 1, true), text) end
    end

    it("--json never prints a secret of the file, echoed in error.limit", function()
      echoing(".*/res_01.*", 2)
      local list = { { name = "B", value = short, environmentOverrides = { preview = preview } },
        { name = "A", value = long } }
      local code, out, err = run({ "secrets", "res_01", file(list), "--json" }, { env = env })
      assert.equals(1, code, err)
      assert_cut(cjson.decode(out).error.limit, out .. err)
      local b = body(1)
      b.id, b.secrets = nil, list
      code, out, err = run({ "import", "res_01", file(b), "--json" }, { env = env })
      assert.equals(1, code, err)
      assert_cut(cjson.decode(out).error.limit, out .. err)
      -- res_02's answer echoes res_01's secrets: the client cuts what its
      -- request carried, the command every secret of the file.
      echoing(".*/res_02", 1)
      b.id = "res_01"
      code, out, err = run({ "sync", file({ b, body(2) }), "--json" }, { env = env })
      assert.equals(1, code, err)
      local v = cjson.decode(out)
      assert.same({ "res_01" }, v.imports)
      assert_cut(v.failures[1].error.limit, out .. err)
    end)

    it("cuts secrets that overlap whole, no tail left behind", function()
      -- The end of `a` is the start of `b`; res_02's answer echoes both as one run.
      local a, b = "alpha-secret-XYZW", "XYZW-beta-secret"
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = ".*/res_02", status = 400,
        error = { code = "bad_request", message = "got alpha-secret-XYZW-beta-secret" } })
      local one = body(1)
      one.id, one.secrets = "res_01", { { name = "A", value = a }, { name = "B", value = b } }
      local code, out, err = run({ "sync", file({ one, body(2) }) }, { env = env })
      assert.equals(1, code, err)
      assert.matches("got [secret]", out .. err, 1, true)
      for _, part in ipairs({ "alpha", "beta", "XYZW" }) do assert.is_nil((out .. err):find(part, 1, true), out .. err) end
    end)

    it("MARKETPLACE_DEBUG=1 log lines are scrubbed like every other line", function()
      local other = "other-token-from-the-environment"
      emu:control("POST", "/_emulator/faults", { method = "GET", status = 404,
        headers = { ["x-vercel-id"] = "iad1::" .. TOKEN .. "::" .. other } })
      local code, out, err = run({ "get", "res_01", "--token", TOKEN }, { env = { VERCEL_API_URL = emu.url,
        VERCEL_TOKEN = other, VERCEL_INSTALLATION_ID = ICFG, MARKETPLACE_DEBUG = "1" } })
      assert.equals(1, code, err)
      assert.truthy(err:find("vercel.marketplace: GET /v1/installations/icfg_cli/resources/res_01 -> 404", 1, true), err)
      for _, s in ipairs({ TOKEN, other }) do assert.is_nil((out .. err):find(s, 1, true), out .. err) end
    end)
  end)

  describe("internal errors", function()
    it("a list answer of the wrong shape is a decode error, exit 1, not usage", function()
      for _, text in ipairs({ '{"resources":[1,2]}', '{"resources":{"a":{}}}' }) do
        emu:control("POST", "/_emulator/faults", { method = "GET", status = 200, body = text, count = 2 })
        local code, out, err = run({ "list", "--json" }, { env = env })
        assert.equals(1, code, err)
        assert.equals("decode", cjson.decode(out).error.kind, out)
        assert.is_nil(err:find("--help", 1, true), err)
        code, out, err = run({ "sync", file(bodies(1, 1)), "--prune" }, { env = env })
        assert.equals(1, code, err)
        assert.truthy(err:find("listing resources to prune: decode error", 1, true), err)
        assert.equals(0, writes(emu:requests()))
      end
    end)

    it("a directory as FILE is a usage error that names it", function()
      local dir = helper.root .. "/spec"
      for _, args in ipairs({ { "import", "res_01", dir }, { "sync", dir }, { "validate", "update", dir },
        { "secrets", "res_01", dir, "--json" } }) do
        local code, out, err = run(args, { env = env })
        assert.equals(2, code, table.concat(args, " "))
        assert.truthy(err:find("cannot read " .. dir .. ": Is a directory\n", 1, true), err)
        if args[4] then assert.equals("usage", cjson.decode(out).error.kind) end
      end
      assert.equals(0, #emu:requests())
    end)

    it("an error raised inside is internal: exit 1, never a usage error", function()
      local cli = require "vercel.marketplace.cli"
      local real = require "vercel.marketplace"
      local client = setmetatable({ installation = function(...)
        local inst = real.installation(...)
        return setmetatable({ get = function() error("boom in get") end }, { __index = inst })
      end }, { __index = real })
      local out, err = { text = "" }, { text = "" }
      local function write(self, s) self.text = self.text .. s end
      out.write, err.write = write, write
      local code = cli.main({ "get", "res_01", "--json" }, { stdout = out, stderr = err, marketplace = client,
        getenv = function(name) return env[name] end, trap_interrupt = false })
      assert.equals(1, code)
      local e = cjson.decode(out.text).error
      assert.equals("internal", e.kind)
      assert.truthy(e.message:find("boom in get", 1, true), e.message)
      assert.is_nil(err.text:find("--help", 1, true), err.text)
      assert.is_nil(err.text:find("nothing was sent", 1, true), err.text)
    end)
  end)

  describe("terminal output", function()
    local EVIL = "db\27[2J\r\nres_fake  ready  \7x\127\194\155"

    -- No control character but line breaks, and no line the server made up.
    local function tame(text)
      assert.is_nil(text:gsub("\n", ""):find("%c"), text)
      assert.is_nil(text:find("\nres_fake", 1, true), text)
    end

    it("list and get show a server's control characters escaped, --json as JSON", function()
      seed({ { id = "res_01", productId = "postgres", name = EVIL, status = "ready",
        metadata = { ["k\27]0;t\7"] = "v\27[31m" } } })
      local code, out, err = run({ "list" }, { env = env })
      assert.equals(0, code, err)
      tame(out)
      assert.equals("res_01                   ready        db\\x1b[2J\\x0d\\x0ares_fake  ready  \\x07x\\x7f\\xc2\\x9b\n", out)
      code, out, err = run({ "get", "res_01" }, { env = env })
      assert.equals(0, code, err)
      tame(out)
      assert.truthy(out:find("\nname +db\\x1b%[2J\\x0d\\x0ares_fake  ready  \\x07x\\x7f\\xc2\\x9b\n"), out)
      code, out = run({ "get", "res_01", "--json" }, { env = env })
      assert.equals(0, code)
      assert.equals(EVIL, cjson.decode(out).resource.name)
    end)

    it("leaves clean text alone, backslashes and UTF-8 included", function()
      seed({ { id = "res_01", productId = "postgres", name = "caf\195\169 C:\\db \\x1b", status = "ready" } })
      local code, out = run({ "list" }, { env = env })
      assert.equals(0, code)
      assert.equals("res_01                   ready        caf\195\169 C:\\db \\x1b\n", out)
    end)

    it("a failure's line is one line, whatever the server said", function()
      emu:control("POST", "/_emulator/faults", { method = "GET", status = 409,
        error = { code = "bad\27[2J", message = "line\r\nvercel-marketplace: fake \27]0;x\7" } })
      local code, out, err = run({ "get", "res_01" }, { env = env })
      assert.equals(1, code)
      assert.equals("", out)
      tame(err)
      assert.equals(1, select(2, err:gsub("\n", "")), err)
    end)
  end)

  describe("Ctrl-C (SIGINT)", function()
    -- Wait (at most 10 s) until the emulator has seen `n` `method` requests.
    local function await_requests(method, n)
      for _ = 1, 200 do
        local k = 0
        for _, r in ipairs(emu:requests()) do if r.method == method then k = k + 1 end end
        if k >= n then return end
        helper.sleep(0.05)
      end
      error(("the emulator saw fewer than %d %s requests"):format(n, method))
    end

    -- res_01 and res_02 are imported at once; res_03 to res_09 hang 20 s.
    local SLOW = { method = "PUT", path = ".*/res_0[3-9]", delay = 20, count = 100 }

    -- Interrupt a sync of res_01..09 (two at a time) once res_03 and res_04 hang.
    local function interrupted_sync(args)
      emu:control("POST", "/_emulator/faults", SLOW)
      local job = start(args, { env = env })
      await_requests("PUT", 4)
      helper.sleep(0.2)
      return job.interrupt()
    end

    it("ends a sync within a second: exit 130 and what became of every item", function()
      local code, out, err, took = interrupted_sync({ "sync", file(bodies(1, 9)), "--concurrency", "2" })
      assert.equals(130, code, err)
      assert.is_true(took < 1.5, "ended " .. took .. " s after SIGINT")
      local lines = { "interrupted: imported 2, deleted 0, failed 0, in flight (outcome unknown) 2, not started 5",
        "  done: import res_01", "  done: import res_02",
        "  in flight (outcome unknown): import res_03", "  in flight (outcome unknown): import res_04" }
      for i = 5, 9 do lines[#lines + 1] = "  not started: import res_0" .. i end
      assert.equals(table.concat(lines, "\n") .. "\n", out)
      assert.truthy(err:find("^vercel%-marketplace: sync: interrupted error"), err)
      assert.is_nil(err:find("--help", 1, true), err)
      assert.equals(4, writes(emu:requests()))      -- nothing started after the signal
    end)

    it("--json: kind interrupted, counts, and every item's state, deletes too", function()
      seed({ body(50) })
      local code, out, err, took = interrupted_sync({ "--json", "sync", file(bodies(1, 9)), "--prune",
        "--concurrency", "2" })
      assert.equals(130, code, err)
      assert.is_true(took < 1.5, "ended " .. took .. " s after SIGINT")
      local v = cjson.decode(out)
      assert.same({ false, "interrupted", 2, 0, 0, 2, 6 },
        { v.ok, v.error.kind, v.imported, v.deleted, v.failed, v.in_flight, v.not_started })
      assert.same({ "res_01", "res_02" }, v.imports)
      local states = {}
      for i, x in ipairs(v.items) do states[i] = x.op .. " " .. x.id .. " " .. x.state end
      assert.same({ "import res_01 done", "import res_02 done", "import res_03 in_flight",
        "import res_04 in_flight", "import res_05 not_started", "import res_06 not_started",
        "import res_07 not_started", "import res_08 not_started", "import res_09 not_started",
        "delete res_50 not_started" }, states)
    end)

    it("ends a single call during its transfer: exit 130, kind interrupted", function()
      emu:control("POST", "/_emulator/faults", { method = "GET", delay = 20 })
      local job = start({ "get", "res_01", "--json" }, { env = env })
      await_requests("GET", 1)
      helper.sleep(0.2)
      local code, out, err, took = job.interrupt()
      assert.equals(130, code, err)
      assert.is_true(took < 1.5, "ended " .. took .. " s after SIGINT")
      assert.equals("interrupted", cjson.decode(out).error.kind)
      assert.is_nil(err:find("--help", 1, true), err)
    end)

    it("before the first request: exit 130, kind interrupted, nothing sent", function()
      -- The interpreter's own handler stops the Lua code once the read ends.
      -- The signal must come while the command waits for its input, after
      -- it has started: later under valgrind (MP_SLOW), which starts slower.
      local slow = tonumber(os.getenv("MP_SLOW")) or 1
      local job = start({ "sync", "-", "--json" }, { env = env, feed = ("sleep %g; echo '[]'"):format(0.3 * slow + 0.7) })
      helper.sleep(0.3 * slow)
      local code, out, err = job.interrupt()
      assert.equals(130, code, err)
      local e = cjson.decode(out).error
      assert.same({ "interrupted", "interrupted (SIGINT) before any request; nothing was sent" }, { e.kind, e.message })
      assert.equals(0, #emu:requests())
    end)

    it("ends a wait for a 20 s Retry-After, sending nothing more", function()
      emu:control("POST", "/_emulator/faults", { method = "DELETE", status = 503, retry_after = 20 })
      local job = start({ "delete", "res_01" }, { env = env })
      await_requests("DELETE", 1)
      helper.sleep(0.3)
      local code, out, err, took = job.interrupt()
      assert.equals(130, code, err)
      assert.is_true(took < 1.5, "ended " .. took .. " s after SIGINT")
      assert.equals("", out)
      assert.truthy(err:find("interrupted", 1, true), err)
      assert.equals(1, writes(emu:requests()))
    end)
  end)

  describe("help", function()
    local commands = { "import", "update", "get", "list", "delete", "secrets", "validate", "sync", "help" }

    it("--help and help COMMAND for every command", function()
      for _, name in ipairs(commands) do
        local code, out, err = run({ name, "--help" })
        assert.equals(0, code, name .. ": " .. err)
        assert.truthy(out:find("Usage: vercel-marketplace " .. name, 1, true), out)
        assert.truthy(out:find("--installation", 1, true), name)
        local code2, out2 = run({ "help", name })
        assert.equals(0, code2)
        assert.equals(out, out2)
      end
      local code, out = run({ "--help" })
      assert.equals(0, code)
      for _, name in ipairs(commands) do assert.truthy(out:find("\n  " .. name .. " ", 1, true), name) end
      code, out = run({ "help" })
      assert.equals(0, code)
    end)
  end)

  describe("progress", function()
    -- In process: a terminal cannot be faked for a subprocess.
    local cli = require "vercel.marketplace.cli"

    local function sink()
      local s = { text = "" }
      function s:write(...) for _, x in ipairs({ ... }) do self.text = self.text .. x end return self end
      return s
    end

    it("draws a bar on stderr when it is a terminal", function()
      local out, err = sink(), sink()
      local path = file(bodies(1, 4))
      local function getenv(name) return env[name] end
      local code = cli.main({ "sync", path }, { stdout = out, stderr = err, getenv = getenv, isatty = true })
      assert.equals(0, code, err.text)
      assert.truthy(err.text:find("%[#+%] 4/4\n"), err.text)
      assert.equals("imported 4, deleted 0, failed 0\n", out.text)
    end)
  end)
end)
