-- The scripts in examples/ (besides main.lua, run by docs_spec), each run as
-- a subprocess against the emulator, judged by the emulator's state.
local helper = require "helper"

local q = helper.shell_quote
local LUA = arg and arg[-1] or "lua5.4"
local TOKEN = "examples-token-0123456789"
local ICFG = "icfg_examples"
local RESOURCES = "/v1/installations/" .. ICFG .. "/resources/"

describe("examples", function()
  local emu = helper.use_emulator({ token = TOKEN })
  local file = helper.use_temp_files()

  -- run(script, args, opts) -> code, stdout, stderr; opts.env, opts.stdin.
  local function run(script, args, opts)
    opts = opts or {}
    local out, err = os.tmpname(), os.tmpname()
    local input = file(opts.stdin or "")
    local vars = { "VERCEL_API_URL=" .. q(emu.url), "VERCEL_TOKEN=" .. q(TOKEN), "VERCEL_INSTALLATION_ID=" .. ICFG }
    for k, v in pairs(opts.env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
    local words = {}
    for i, a in ipairs(args or {}) do words[i] = q(a) end
    local cmd = "env " .. table.concat(vars, " ") .. " timeout 60 " .. q(LUA) .. " "
        .. q(helper.root .. "/examples/" .. script) .. " " .. table.concat(words, " ")
        .. " <" .. q(input) .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $?"
    local p = assert(io.popen(cmd, "r"))
    local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    local stdout, stderr = helper.read_file(out), helper.read_file(err)
    os.remove(out)
    os.remove(err)
    return code, stdout, stderr
  end

  local function seed(rid, body)
    assert.equals(200, (emu:api("PUT", RESOURCES .. rid, body)))
    emu:control("DELETE", "/_emulator/requests")
  end

  local function sync_file(n)
    local list = {}
    for i = 1, n do
      list[i] = { id = ("res_%02d"):format(i), productId = "postgres", name = "db-" .. i, status = "ready" }
    end
    return list
  end

  local function puts()
    local ids = {}
    for _, r in ipairs(emu:requests()) do
      if r.method == "PUT" then ids[#ids + 1] = r.path:match("[^/]+$") end
    end
    table.sort(ids)
    return ids
  end

  describe("import_export.lua", function()
    it("imports a whole export and reads every field back as exported", function()
      local export = {}
      for i = 1, 30 do
        export[i] = {
          id = ("exp_%02d"):format(i), productId = "kv", name = "cache-" .. i, status = i % 3 == 0 and "pending" or "ready",
          ownership = "linked",
          metadata = { region = "iad1", shards = i, big = 2 ^ 40 + i, ratio = 0.5 + i, tls = i % 2 == 0, tags = { "a", "b" } },
          billingPlan = { id = "plan_" .. i, type = "subscription", name = "Plan " .. i },
        }
      end
      local code, out, err = run("import_export.lua", { file(export) })
      assert.equals(0, code, err)
      assert.truthy(out:find("imported 30 of 30", 1, true), out)
      assert.truthy(out:find("verified 30", 1, true), out)
      for i = 1, 30, 7 do
        local r = emu:record(ICFG, ("exp_%02d"):format(i))
        assert.equals("cache-" .. i, r.name)
        assert.same(export[i].metadata, r.metadata)
        assert.equals("plan_" .. i, r.billingPlan.id)
      end
      assert.equals(30, #puts())
    end)

    it("keeps an empty array in metadata an array (marketplace.decode)", function()
      local text = '[{"id":"exp_e","productId":"kv","name":"c","status":"ready","metadata":{"tags":[],"n":7}}]'
      local code, out, err = run("import_export.lua", { file(text) })
      assert.equals(0, code, err)
      assert.truthy(out:find("verified 1", 1, true), out)
      local _, stored = helper.http("GET", emu.url .. "/_emulator/resources/" .. ICFG .. "/exp_e")
      assert.truthy(stored:find('"tags":[]', 1, true), stored)
    end)

    it("refuses an export with an invalid item and sends nothing", function()
      local export = sync_file(3)
      export[2].status = "lost"
      local code, _, err = run("import_export.lua", { file(export) })
      assert.equals(2, code)
      assert.truthy(err:find("item 2 (res_02)", 1, true), err)
      assert.equals(0, #emu:requests())
    end)
  end)

  describe("suspend_on_billing.lua", function()
    it("suspends with a notification on a failed payment, and resumes on payment", function()
      seed("db_1", { productId = "postgres", name = "main", status = "ready" })
      local event = { type = "payment_failed", resourceId = "db_1", invoiceUrl = "https://billing.example/inv/7" }
      local code, out, err = run("suspend_on_billing.lua", { file(event) })
      assert.equals(0, code, err)
      assert.truthy(out:find("db_1 is now suspended", 1, true), out)
      local r = emu:record(ICFG, "db_1")
      assert.equals("suspended", r.status)
      assert.equals("error", r.notification.level)
      assert.equals("https://billing.example/inv/7", r.notification.href)
      code = run("suspend_on_billing.lua", { "-" }, { stdin = '{"type":"payment_succeeded","resourceId":"db_1"}' })
      assert.equals(0, code)
      r = emu:record(ICFG, "db_1")
      assert.equals("ready", r.status)
      assert.is_nil(r.notification)
    end)

    it("refuses an invoice link that is not http(s), sending nothing", function()
      seed("db_1", { productId = "postgres", name = "main", status = "ready" })
      local code = run("suspend_on_billing.lua", { "-" },
        { stdin = '{"type":"payment_failed","resourceId":"db_1","invoiceUrl":"javascript:alert(1)"}' })
      assert.equals(2, code)
      assert.equals(0, #emu:requests())
      assert.equals("ready", emu:record(ICFG, "db_1").status)
    end)
  end)

  describe("rotate_secrets.lua", function()
    it("rotates one secret and keeps the others, never printing the value", function()
      seed("db_1", { productId = "postgres", name = "main", status = "ready", secrets = {
        { name = "URL", prefix = "POSTGRES", value = "postgres://db/app" },
        { name = "PASSWORD", prefix = "POSTGRES", value = "old-password" },
      } })
      local code, out, err = run("rotate_secrets.lua", { "db_1", "PASSWORD", "POSTGRES" },
        { env = { NEW_SECRET_VALUE = "new-password-42" } })
      assert.equals(0, code, err)
      assert.is_nil((out .. err):find("new-password-42", 1, true))
      local values = {}
      for _, s in ipairs(emu:record(ICFG, "db_1").secrets) do values[s.name] = s.value end
      assert.same({ URL = "postgres://db/app", PASSWORD = "new-password-42" }, values)
      -- Without a value given, a random one: 32 bytes as hex.
      code = run("rotate_secrets.lua", { "db_1", "PASSWORD", "POSTGRES" })
      assert.equals(0, code)
      for _, s in ipairs(emu:record(ICFG, "db_1").secrets) do values[s.name] = s.value end
      assert.truthy(values.PASSWORD:match("^%x+$") and #values.PASSWORD == 64, values.PASSWORD)
      assert.equals("postgres://db/app", values.URL)
    end)
  end)

  describe("resume_failed_batch.lua", function()
    it("re-runs only the items that failed", function()
      for _, rid in ipairs({ "res_03", "res_07" }) do
        emu:control("POST", "/_emulator/faults", { method = "PUT", path = RESOURCES .. rid, status = 409,
          error = { code = "conflict", message = "busy" } })
      end
      local code, out, err = run("resume_failed_batch.lua", { file(sync_file(10)) })
      assert.equals(0, code, err)
      assert.truthy(out:find("round 1: 10 sent, 8 imported, 2 to retry", 1, true), out)
      assert.truthy(out:find("round 2: 2 sent, 2 imported, 0 to retry", 1, true), out)
      local ids = puts()
      assert.equals(12, #ids)                -- 10, then only the 2 that failed
      local count = {}
      for _, id in ipairs(ids) do count[id] = (count[id] or 0) + 1 end
      assert.same({ 2, 2, 1 }, { count.res_03, count.res_07, count.res_01 })
      for i = 1, 10 do assert.truthy(emu:record(ICFG, ("res_%02d"):format(i))) end
    end)

    it("takes the failures of a `vercel-marketplace sync --json` result", function()
      local result = { ok = false, failures = { { op = "import", id = "res_02", error = { kind = "http" } } } }
      local code, out, err = run("resume_failed_batch.lua", { file(sync_file(4)), file(result) })
      assert.equals(0, code, err)
      assert.truthy(out:find("resuming 1 failed item", 1, true), out)
      assert.same({ "res_02" }, puts())
    end)

    it("gives up after its rounds and exits 1", function()
      emu:control("POST", "/_emulator/faults", { method = "PUT", path = RESOURCES .. "res_01", status = 409,
        count = 3, error = { code = "conflict", message = "busy" } })
      local code, _, err = run("resume_failed_batch.lua", { file(sync_file(2)) })
      assert.equals(1, code)
      assert.truthy(err:find("still failing: res_01", 1, true), err)
    end)
  end)
end)
