-- The emulator, driven over HTTP only (helper.http and the control
-- interface), as partners' scripts and our client will drive it.
local cjson = require "cjson"
local helper = require "helper"

local TOKEN = "spec-token"
local AUTH = { Authorization = "Bearer " .. TOKEN }

-- Bodies shaped like the reference pages (Import Resource's schema).
local function import_body(overrides)
  local b = {
    productId = "prod_postgres", name = "my-db", status = "ready", ownership = "owned",
    metadata = { region = "iad1", size = 42, tags = { "a", "b" }, ha = true },
    extras = { anything = { deep = 1 } },
    billingPlan = { id = "plan_pro", type = "subscription", name = "Pro",
                    description = "For teams", paymentMethodRequired = true, cost = "$20",
                    details = { { label = "Storage", value = "10 GB" }, { label = "Support" } },
                    highlightedDetails = { { label = "Fast" } }, effectiveDate = "2025-01-01",
                    customKey = "extra keys are allowed on billingPlan" },
    notification = { level = "info", title = "Provisioned", message = "ok",
                     href = "https://example.com/db" },
    secrets = { { name = "URL", value = "postgres://u:p@h/db", prefix = "POSTGRES",
                  environmentOverrides = { preview = "postgres://preview" } },
                { name = "PASSWORD", value = "p" } },
  }
  for k, v in pairs(overrides or {}) do b[k] = v end
  return b
end

local function path(icfg, rid, tail)
  local p = "/v1/installations/" .. icfg .. "/resources"
  if rid then p = p .. "/" .. rid end
  if tail then p = p .. "/" .. tail end
  return p
end

local function raw(emu, method, p, body, headers)
  local h = { Authorization = "Bearer " .. TOKEN }
  for k, v in pairs(headers or {}) do h[k] = v end
  return helper.http(method, emu.url .. p, { headers = h, body = body })
end

local function secret_names(record)
  local names = {}
  for i, s in ipairs(record.secrets or {}) do names[i] = s.name .. "=" .. s.value end
  return table.concat(names, ",")
end

describe("emulator", function()
  local emu

  lazy_setup(function() emu = helper.start_emulator({ token = TOKEN }) end)
  lazy_teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:reset() end)

  describe("PUT import", function()
    it("answers 200 with the name and stores the resource", function()
      local status, body, headers = emu:api("PUT", path("icfg_1", "db1"), import_body())
      assert.are.equal(200, status)
      assert.are.same({ name = "my-db" }, body)
      assert.truthy(headers["x-vercel-id"])
      assert.matches("^application/json", headers["content-type"])
      local rec = emu:record("icfg_1", "db1")
      assert.are.equal("POSTGRES", rec.secrets[1].prefix)
      assert.are.equal("linked", (function()
        emu:api("PUT", path("icfg_1", "db2"), import_body({ ownership = "linked" }))
        return emu:record("icfg_1", "db2").ownership
      end)())
    end)

    it("keeps the internalId across upserts and replaces the fields", function()
      emu:api("PUT", path("icfg_1", "db1"), import_body())
      local _, first = emu:api("GET", path("icfg_1", "db1"))
      assert.matches("^res_", first.internalId)
      emu:api("PUT", path("icfg_1", "db1"), import_body({ name = "renamed", status = "suspended" }))
      local _, second = emu:api("GET", path("icfg_1", "db1"))
      assert.are.equal(first.internalId, second.internalId)
      assert.are.equal("renamed", second.name)
      assert.are.equal("suspended", second.status)
    end)

    it("gives different resources different internalIds", function()
      emu:api("PUT", path("i", "a"), import_body())
      emu:api("PUT", path("i", "b"), import_body())
      local _, a = emu:api("GET", path("i", "a"))
      local _, b = emu:api("GET", path("i", "b"))
      assert.are_not.equal(a.internalId, b.internalId)
    end)

    it("is also served under /api", function()
      local status = emu:api("PUT", "/api" .. path("icfg_1", "db1"), import_body())
      assert.are.equal(200, status)
      local _, body = emu:api("GET", path("icfg_1", "db1"))
      assert.are.equal("db1", body.id)
    end)

    it("unescapes ids segment by segment (%2F, spaces, UTF-8, +)", function()
      local status = emu:api("PUT", path("ic%2Fg%20x", "a%2Fb%E2%9C%93+c"), import_body())
      assert.are.equal(200, status)
      local rec = emu:record("ic/g x", "a/b\226\156\147+c")
      assert.truthy(rec)
      local _, list = emu:api("GET", path("ic%2Fg%20x"))
      assert.are.equal("a/b\226\156\147+c", list.resources[1].partnerId)
      assert.are.equal(path("ic%2Fg%20x", "a%2Fb%E2%9C%93+c"), emu:requests()[1].path)
    end)
  end)

  describe("GET one", function()
    it("answers the resource with only the fields the SDK knows", function()
      emu:api("PUT", path("icfg_1", "db1"), import_body())
      local status, body = emu:api("GET", path("icfg_1", "db1"))
      assert.are.equal(200, status)
      assert.are.equal("db1", body.id)
      assert.are.equal("my-db", body.name)
      assert.are.equal("ready", body.status)
      assert.are.equal("prod_postgres", body.productId)
      assert.are.equal("plan_pro", body.billingPlanId)
      assert.are.same(import_body().notification, body.notification)
      assert.are.same(import_body().metadata, body.metadata)
      for _, hidden in ipairs({ "secrets", "ownership", "extras", "billingPlan", "installation" }) do
        assert.is_nil(body[hidden], hidden)
      end
    end)

    it("keeps numbers and empty arrays as sent", function()
      local text = '{"productId":"p","name":"n","status":"ready",'
        .. '"metadata":{"n":42,"big":9007199254740993,"f":0.30000000000000004,"e":[]}}'
      raw(emu, "PUT", path("i", "nums"), text)
      local _, body = raw(emu, "GET", path("i", "nums"))
      assert.matches('"n":42[,}]', body)
      assert.matches('"big":900719925474099[23][,}]', body)
      assert.matches('"f":0.30000000000000004[,}]', body)
      assert.matches('"e":%[%]', body)
    end)

    it("answers only metadata values the SDK's response schema takes", function()
      local text = '{"productId":"p","name":"n","status":"ready","metadata":{"s":"x","n":1,"b":false,'
        .. '"ss":["a"],"ns":[1,2],"o":{},"deep":{"a":1},"mixed":[1,"a"],"objs":[{"a":1}],"nul":null}}'
      raw(emu, "PUT", path("i", "meta"), text)
      local _, body = emu:api("GET", path("i", "meta"))
      assert.are.same({ s = "x", n = 1, b = false, ss = { "a" }, ns = { 1, 2 } }, body.metadata)
      local _, list = emu:api("GET", path("i"))
      assert.are.same(body.metadata, list.resources[1].metadata)
    end)

    it("answers 404 not_found for an unknown resource", function()
      local status, body, headers = emu:api("GET", path("icfg_1", "nope"))
      assert.are.equal(404, status)
      assert.are.equal("not_found", body.error.code)
      assert.truthy(headers["x-vercel-id"])
    end)
  end)

  describe("GET list", function()
    it("answers an empty list as []", function()
      local status, body = raw(emu, "GET", path("empty"))
      assert.are.equal(200, status)
      assert.are.equal('{"resources":[]}', body)
    end)

    it("lists one installation's resources in insertion order, with partnerId", function()
      for _, id in ipairs({ "c", "a", "b" }) do emu:api("PUT", path("i1", id), import_body()) end
      emu:api("PUT", path("i2", "other"), import_body())
      emu:api("PUT", path("i1", "c"), import_body({ name = "again" }))  -- keeps its place
      local _, body = emu:api("GET", path("i1"))
      local ids = {}
      for i, r in ipairs(body.resources) do ids[i] = r.partnerId; assert.is_nil(r.id) end
      assert.are.same({ "c", "a", "b" }, ids)
      assert.are.equal("again", body.resources[1].name)
      assert.is_nil(body.resources[1].secrets)
      assert.truthy(body.resources[1].internalId)
    end)
  end)

  describe("PATCH update", function()
    before_each(function() emu:api("PUT", path("i", "r"), import_body()) end)

    it("answers 404 for an unknown resource", function()
      local status, body = emu:api("PATCH", path("i", "nope"), { name = "x" })
      assert.are.equal(404, status)
      assert.are.equal("not_found", body.error.code)
    end)

    it("replaces the fields present and keeps the rest", function()
      local status, body = emu:api("PATCH", path("i", "r"), { status = "error", metadata = { x = 1 } })
      assert.are.equal(200, status)
      assert.are.same({ name = "my-db" }, body)
      local _, r = emu:api("GET", path("i", "r"))
      assert.are.equal("error", r.status)
      assert.are.same({ x = 1 }, r.metadata)
      assert.are.equal("my-db", r.name)
      assert.are.equal("plan_pro", r.billingPlanId)
    end)

    it("updates billingPlanId with a new billingPlan", function()
      emu:api("PATCH", path("i", "r"), { billingPlan = { id = "plan_2", type = "prepayment", name = "P" } })
      local _, r = emu:api("GET", path("i", "r"))
      assert.are.equal("plan_2", r.billingPlanId)
    end)

    it("clears the notification when given a string", function()
      assert.are.equal(200, (emu:api("PATCH", path("i", "r"), { notification = "" })))
      local _, r = emu:api("GET", path("i", "r"))
      assert.is_nil(r.notification)
    end)

    it("replaces all secrets with an array", function()
      emu:api("PATCH", path("i", "r"), { secrets = { { name = "NEW", value = "1" } } })
      assert.are.equal("NEW=1", secret_names(emu:record("i", "r")))
    end)

    it("overwrites only the named secrets with partial=true", function()
      emu:api("PATCH", path("i", "r"), { secrets = { secrets = {
        { name = "PASSWORD", value = "q" }, { name = "NEW", value = "1" } }, partial = true } })
      assert.are.equal("URL=postgres://u:p@h/db,PASSWORD=q,NEW=1", secret_names(emu:record("i", "r")))
    end)

    it("replaces all secrets with partial=false", function()
      emu:api("PATCH", path("i", "r"), { secrets = { secrets = { { name = "X", value = "1" } },
                                                     partial = false } })
      assert.are.equal("X=1", secret_names(emu:record("i", "r")))
    end)

    it("refuses productId (not part of an update)", function()
      local status, body = emu:api("PATCH", path("i", "r"), { productId = "x" })
      assert.are.equal(400, status)
      assert.matches("`productId`", body.error.message)
    end)
  end)

  describe("DELETE", function()
    it("answers 204 with an empty body, then 404", function()
      emu:api("PUT", path("i", "r"), import_body())
      local status, body, headers = raw(emu, "DELETE", path("i", "r"))
      assert.are.equal(204, status)
      assert.are.equal("", body)
      assert.truthy(headers["x-vercel-id"])
      assert.are.equal(404, (emu:api("GET", path("i", "r"))))
      assert.are.equal(404, (emu:api("DELETE", path("i", "r"))))
    end)
  end)

  describe("PUT secrets", function()
    it("answers 404 for an unknown resource", function()
      local status = emu:api("PUT", path("i", "nope", "secrets"), { secrets = {} })
      assert.are.equal(404, status)
    end)

    it("replaces all secrets and answers 201 with an empty body", function()
      emu:api("PUT", path("i", "r"), import_body())
      local status, body = raw(emu, "PUT", path("i", "r", "secrets"),
                               '{"secrets":[{"name":"A","value":"1"}]}')
      assert.are.equal(201, status)
      assert.are.equal("", body)
      assert.are.equal("A=1", secret_names(emu:record("i", "r")))
    end)

    it("accepts an empty list, which removes every secret", function()
      emu:api("PUT", path("i", "r"), import_body())
      assert.are.equal(201, (raw(emu, "PUT", path("i", "r", "secrets"), '{"secrets":[]}')))
      local _, text = helper.http("GET", emu.url .. "/_emulator/resources/i/r")
      assert.matches('"secrets":%[%]', text)
    end)

    it("merges with partial=true", function()
      emu:api("PUT", path("i", "r"), import_body())
      emu:api("PUT", path("i", "r", "secrets"), { secrets = { { name = "URL", value = "new" } }, partial = true })
      assert.are.equal("URL=new,PASSWORD=p", secret_names(emu:record("i", "r")))
    end)

    it("validates the body", function()
      emu:api("PUT", path("i", "r"), import_body())
      local status, body = emu:api("PUT", path("i", "r", "secrets"), { secrets = { { name = "A" } } })
      assert.are.equal(400, status)
      assert.matches("missing required property `value`", body.error.message)
    end)
  end)

  describe("errors", function()
    it("answers 401 forbidden without a token", function()
      local status, body, headers = helper.http("GET", emu.url .. path("i"))
      assert.are.equal(401, status)
      body = cjson.decode(body)
      assert.are.equal("forbidden", body.error.code)
      assert.are.equal("Not authorized", body.error.message)
      assert.truthy(headers["x-vercel-id"])
    end)

    it("answers 401 for a wrong token, and accepts any installation with the right one", function()
      local status = helper.http("GET", emu.url .. path("i"), { headers = { Authorization = "Bearer nope" } })
      assert.are.equal(401, status)
      assert.are.equal(200, (emu:api("GET", path("any-installation-at-all"))))
    end)

    it("answers 404 not_found for unknown routes", function()
      for _, p in ipairs({ "/", "/v2/installations/i/resources", "/v1/installations/i/resources/r/x",
                           "/v1/installations//resources", "/v1/installations/i/resources/" }) do
        local status, body = emu:api("GET", p)
        assert.are.equal(404, status, p)
        assert.are.equal("not_found", body.error.code, p)
      end
    end)

    it("answers 405 for a wrong method, with Allow", function()
      local status, body, headers = emu:api("POST", path("i", "r"), "{}")
      assert.are.equal(405, status)
      assert.truthy(body.error.code)
      assert.matches("PATCH", headers["allow"])
      assert.are.equal(405, (emu:api("DELETE", path("i"))))
      assert.are.equal(405, (emu:api("GET", path("i", "r", "secrets"))))
    end)

    it("answers 400 bad_request for malformed JSON and non-object bodies", function()
      for _, text in ipairs({ '{"name":', "[1,2]", '"str"', "42", "", "NaN" }) do
        local status, body = raw(emu, "PUT", path("i", "r"), text)
        assert.are.equal(400, status, text)
        assert.are.equal("bad_request", cjson.decode(body).error.code, text)
      end
    end)

    it("names the offending field, never its value", function()
      local cases = {
        { import_body({ zz = "SECRET-VALUE" }), "should NOT have additional property `zz`" },
        { { productId = "p", name = "n" }, "missing required property `status`" },
        { import_body({ status = "SECRET-VALUE" }), "`status` should be equal to one of the allowed values" },
        { import_body({ billingPlan = { id = "x", type = "SECRET-VALUE", name = "n" } }),
          "`billingPlan.type` should be equal to one of the allowed values" },
        { import_body({ name = 12345 }), "`name` should be string" },
        { import_body({ billingPlan = { id = "x", type = "prepayment", name = "n",
                                        details = { { label = "a" }, { value = "SECRET-VALUE" } } } }),
          "`billingPlan.details[1]` missing required property `label`" },
        { import_body({ notification = { level = "info", title = "t", href = "ftp://SECRET-VALUE" } }),
          "`notification.href`" },
      }
      for _, c in ipairs(cases) do
        local status, body = emu:api("PUT", path("i", "r"), c[1])
        assert.are.equal(400, status, c[2])
        assert.are.equal("bad_request", body.error.code)
        assert.truthy(body.error.message:find(c[2], 1, true), body.error.message)
        assert.is_nil(body.error.message:find("SECRET-VALUE", 1, true))
        assert.is_nil(body.error.message:find("12345", 1, true))
      end
    end)

    it("answers 413 as JSON when the body is too large", function()
      local status, body, headers = raw(emu, "PUT", path("i", "r"), string.rep("a", 17 * 1024 * 1024))
      assert.are.equal(413, status)
      assert.truthy(cjson.decode(body).error.code)
      assert.truthy(headers["x-vercel-id"])
    end)

    it("gives every answer its own x-vercel-id", function()
      local _, _, h1 = emu:api("GET", path("i"))
      local _, _, h2 = emu:api("GET", path("i"))
      assert.are_not.equal(h1["x-vercel-id"], h2["x-vercel-id"])
    end)
  end)

  describe("request log", function()
    it("records API requests as received, and not control requests", function()
      raw(emu, "PUT", path("i", "a%2Fb") .. "?x=1&y=2", '{"productId":"p","name":"n","status":"ready"}',
          { ["User-Agent"] = "spec-agent/1", Accept = "application/json" })
      emu:control("GET", "/_emulator/faults")
      local reqs = emu:requests()
      assert.are.equal(1, #reqs)
      local r = reqs[1]
      assert.are.equal("PUT", r.method)
      assert.are.equal("/v1/installations/i/resources/a%2Fb", r.path)
      assert.are.equal("x=1&y=2", r.query)
      assert.are.equal('{"productId":"p","name":"n","status":"ready"}', r.body)
      assert.are.equal("Bearer [token]", r.headers.authorization)   -- the token sent, never its value
      assert.are.equal("spec-agent/1", r.headers["user-agent"])
      assert.are.equal("application/json", r.headers["content-type"])
      assert.are.equal("application/json", r.headers.accept)
      assert.is_number(r.connection)
      assert.are.equal(1, r.connection_requests)
    end)

    it("shows keep-alive: one connection, growing connection_requests", function()
      local url = emu.url .. path("i")
      os.execute("curl -s -o /dev/null -o /dev/null --max-time 10 " .. helper.shell_quote(url)
                 .. " " .. helper.shell_quote(url))
      local reqs = emu:requests()
      assert.are.equal(2, #reqs)
      assert.are.equal(reqs[1].connection, reqs[2].connection)
      assert.are.same({ 1, 2 }, { reqs[1].connection_requests, reqs[2].connection_requests })
    end)

    it("records the Authorization header redacted, even when refused with 401", function()
      local real = "vercel_real_token_0123456789"
      assert.are.equal(200, (raw(emu, "GET", path("i"))))
      assert.are.equal(401, (raw(emu, "GET", path("i"), nil, { Authorization = "Bearer " .. real })))
      assert.are.equal(401, (raw(emu, "GET", path("i"), nil, { Authorization = "Basic " .. real })))
      assert.are.equal(401, (helper.http("GET", emu.url .. path("i"))))
      local reqs = emu:requests()
      assert.are.equal(4, #reqs)
      assert.are.equal("Bearer [token]", reqs[1].headers.authorization)
      assert.are.equal("Bearer [other token]", reqs[2].headers.authorization)
      assert.are.equal("[redacted]", reqs[3].headers.authorization)
      assert.is_nil(reqs[4].headers.authorization)
      local _, text = helper.http("GET", emu.url .. "/_emulator/requests")
      assert.is_nil(text:find(real, 1, true))
      assert.is_nil(text:find(TOKEN, 1, true))
    end)

    it("keeps only the last 1000, and DELETE clears it", function()
      local urls = {}
      for i = 1, 1005 do urls[i] = helper.shell_quote(emu.url .. "/v1/n" .. i) end
      local list = os.tmpname()
      local f = assert(io.open(list, "w"))
      for _, u in ipairs(urls) do f:write("url = ", u:sub(2, -2), "\noutput = /dev/null\n") end
      f:close()
      os.execute("curl -s --max-time 30 -K " .. helper.shell_quote(list))
      os.remove(list)
      local reqs = emu:requests()
      assert.are.equal(1000, #reqs)
      assert.are.equal("/v1/n6", reqs[1].path)
      assert.are.equal("/v1/n1005", reqs[1000].path)
      assert.are.equal(200, (emu:control("DELETE", "/_emulator/requests")))
      assert.are.same({}, emu:requests())
      local _, body = helper.http("GET", emu.url .. "/_emulator/requests")
      assert.are.equal('{"requests":[]}', body)
    end)
  end)

  describe("control", function()
    it("shows stored records with secrets, 404 when absent", function()
      assert.are.equal(404, (emu:control("GET", "/_emulator/resources/i/none")))
      emu:api("PUT", path("i", "r"), import_body())
      local status, rec = emu:control("GET", "/_emulator/resources/i/r")
      assert.are.equal(200, status)
      assert.are.equal("URL=postgres://u:p@h/db,PASSWORD=p", secret_names(rec))
    end)

    it("reset clears resources, faults, rate limit and log", function()
      emu:api("PUT", path("i", "r"), import_body())
      emu:control("POST", "/_emulator/faults", { status = 500, count = 5 })
      emu:control("POST", "/_emulator/rate-limit", { limit = 0, window = 60 })
      assert.are.equal(200, (emu:control("POST", "/_emulator/reset")))
      assert.are.same({}, emu:requests())
      local status, body = emu:api("GET", path("i"))
      assert.are.equal(200, status)
      assert.are.same(0, #body.resources)
    end)

    -- DNS rebinding: a web page on a name that resolves to 127.0.0.1 must not
    -- reach the log (tokens), records (secrets), faults or reset.
    it("refuses control requests whose Host is not loopback, with 403", function()
      emu:api("PUT", path("i", "r"), import_body())
      local port = tostring(emu.port)
      for _, host in ipairs({ "evil.example", "evil.example:" .. port, "127.0.0.1.evil.example",
                              "localhost.evil.example:" .. port, "127.0.0.2:" .. port, "[::2]:" .. port,
                              "localhost:" .. port .. "@evil.example", "127.0.0.1:x" }) do
        for _, req in ipairs({ { "GET", "/_emulator/requests" }, { "GET", "/_emulator/resources/i/r" },
                               { "POST", "/_emulator/faults", '{"status":500}' },
                               { "POST", "/_emulator/reset" } }) do
          local status, body, headers = helper.http(req[1], emu.url .. req[2],
                                                    { headers = { Host = host }, body = req[3] })
          assert.are.equal(403, status, host .. " " .. req[2])
          assert.matches("^application/json", headers["content-type"])
          assert.are.equal("forbidden", cjson.decode(body).error.code)
          assert.is_nil(body:find("postgres", 1, true))
        end
      end
      -- Nothing was armed or reset, and the request line's host counts too.
      assert.are.equal("URL=postgres://u:p@h/db,PASSWORD=p", secret_names(emu:record("i", "r")))
      assert.are.equal(0, #select(2, emu:control("GET", "/_emulator/faults")).faults)
      local out = io.popen("curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H 'Host: 127.0.0.1' -x "
        .. helper.shell_quote(emu.url) .. " http://evil.example/_emulator/requests"):read("*a")
      assert.are.equal("403", out)
      out = io.popen("curl -s --max-time 10 -o /dev/null -w '%{http_code}' --http1.0 -H 'Host:' "
        .. helper.shell_quote(emu.url .. "/_emulator/requests")):read("*a")
      assert.are.equal("403", out)                             -- no Host at all
      for _, host in ipairs({ "127.0.0.1", "127.0.0.1:" .. port, "localhost", "LocalHost:" .. port,
                              "[::1]", "[::1]:" .. port }) do
        local status, body = helper.http("GET", emu.url .. "/_emulator/requests", { headers = { Host = host } })
        assert.are.equal(200, status, host)
        assert.is_table(cjson.decode(body).requests)
      end
      -- The API answers whatever the Host (a proxy may pass api.vercel.test).
      assert.are.equal(200, (emu:api("GET", path("i"), nil, { Host = "api.vercel.test" })))
    end)

    -- A page on another site may send a POST (text/plain, a form) without a
    -- CORS preflight, and needs no answer to reset the state or arm a fault.
    it("refuses changes from a foreign Origin (403) or not sent as JSON (415)", function()
      emu:api("PUT", path("i", "r"), import_body())
      local port = tostring(emu.port)
      local json = "application/json"
      local changes = { { "POST", "/_emulator/reset" }, { "POST", "/_emulator/faults", '{"status":500}' },
                        { "DELETE", "/_emulator/requests" },
                        { "POST", "/_emulator/rate-limit", '{"limit":0,"window":60}' } }
      local refusals = {
        { 403, { Origin = "https://evil.example", ["Content-Type"] = "text/plain" } },
        { 403, { Origin = "https://evil.example", ["Content-Type"] = json } },
        { 403, { Origin = "null", ["Content-Type"] = json } },
        { 403, { Origin = "http://127.0.0.1.evil.example:" .. port, ["Content-Type"] = json } },
        { 403, { Origin = "http://localhost.evil.example", ["Content-Type"] = json } },
        { 403, { Origin = "file://", ["Content-Type"] = json } },
        { 415, { ["Content-Type"] = "text/plain" } },
        { 415, { ["Content-Type"] = "application/x-www-form-urlencoded" } },
        { 415, { ["Content-Type"] = "multipart/form-data; boundary=x" } },
        { 415, { ["Content-Type"] = "application/jsonp" } },
        { 415, { ["Content-Type"] = "" } },                        -- none at all
        { 415, { Origin = "http://localhost:" .. port, ["Content-Type"] = "text/plain" } },
      }
      for _, change in ipairs(changes) do
        for _, r in ipairs(refusals) do
          local what = change[1] .. " " .. change[2] .. " " .. cjson.encode(r[2])
          local status, body, headers = helper.http(change[1], emu.url .. change[2],
                                                    { headers = r[2], body = change[3] })
          assert.are.equal(r[1], status, what)
          assert.matches("^application/json", headers["content-type"], what)
          local code = r[1] == 403 and "forbidden" or "unsupported_media_type"
          assert.are.equal(code, cjson.decode(body).error.code, what)
        end
      end
      -- Nothing was reset, armed, cleared or limited.
      assert.are.equal("URL=postgres://u:p@h/db,PASSWORD=p", secret_names(emu:record("i", "r")))
      assert.are.equal(0, #select(2, emu:control("GET", "/_emulator/faults")).faults)
      assert.are.equal(1, #emu:requests())
      assert.are.equal(200, (emu:api("GET", path("i"))))
      -- JSON from no page, or from a page on this machine, goes through.
      for _, h in ipairs({ { ["Content-Type"] = json }, { ["Content-Type"] = "Application/JSON; charset=utf-8" },
                           { Origin = "http://127.0.0.1:" .. port, ["Content-Type"] = json },
                           { Origin = "https://localhost", ["Content-Type"] = json },
                           { Origin = "http://[::1]:" .. port, ["Content-Type"] = json } }) do
        local what = cjson.encode(h)
        assert.are.equal(201, (helper.http("POST", emu.url .. "/_emulator/faults",
                                           { headers = h, body = '{"status":500}' })), what)
        assert.are.equal(200, (helper.http("DELETE", emu.url .. "/_emulator/faults", { headers = h })), what)
      end
      -- A GET changes nothing, and no page elsewhere may read its answer.
      local status, _, headers = helper.http("GET", emu.url .. "/_emulator/faults",
                                             { headers = { Origin = "https://evil.example" } })
      assert.are.equal(200, status)
      assert.is_nil(headers["access-control-allow-origin"])
    end)

    it("answers 404 and 405 for unknown control routes and methods", function()
      assert.are.equal(404, (emu:control("GET", "/_emulator/nope")))
      assert.are.equal(405, (emu:control("PUT", "/_emulator/faults")))
    end)
  end)

  describe("faults", function()
    local function fault(spec)
      local status, body = emu:control("POST", "/_emulator/faults", spec)
      assert.are.equal(201, status)
      assert.is_number(body.id)
      return body.id
    end

    it("answers a status count times, then the real handler", function()
      fault({ status = 503, count = 2 })
      for _ = 1, 2 do
        local status, body, headers = emu:api("GET", path("i"))
        assert.are.equal(503, status)
        assert.are.equal("service_unavailable", body.error.code)
        assert.truthy(headers["x-vercel-id"])
      end
      assert.are.equal(200, (emu:api("GET", path("i"))))
      assert.are.equal(3, #emu:requests())   -- fault answers are logged too
    end)

    it("matches method and an anchored path pattern, in the order added", function()
      fault({ method = "PUT", path = "/v1/installations/[^/]+/resources/r1", status = 500 })
      fault({ status = 502 })
      assert.are.equal(502, (emu:api("GET", path("i", "r1"))))        -- first skipped (method)
      assert.are.equal(200, (emu:api("PUT", path("i", "r1x"), import_body())))  -- anchored
      assert.are.equal(500, (emu:api("PUT", path("i", "r1"), import_body())))
    end)

    it("answers a given error object or raw body, and 2xx bodies replace the handler", function()
      fault({ status = 409, error = { code = "conflict", message = "taken", extra = 1 } })
      local status, body = emu:api("GET", path("i"))
      assert.are.equal(409, status)
      assert.are.same({ error = { code = "conflict", message = "taken", extra = 1 } }, body)
      fault({ status = 200, body = '{"resources":[{"partnerId":"fake"}]}' })
      local s2, text = raw(emu, "GET", path("i"))
      assert.are.equal(200, s2)
      assert.are.equal('{"resources":[{"partnerId":"fake"}]}', text)
      fault({ status = 500, body = "" })
      local s3, t3 = raw(emu, "GET", path("i"))
      assert.are.equal(500, s3)
      assert.are.equal("", t3)
    end)

    it("answers a 2xx status alone as that status with an empty body, in place of the handler", function()
      fault({ method = "PUT", status = 201 })
      fault({ method = "GET", status = 204, retry_after = 3 })
      local status, text, headers = raw(emu, "PUT", path("i", "r"), cjson.encode(import_body()))
      assert.are.equal(201, status)
      assert.are.equal("", text)
      assert.truthy(headers["x-vercel-id"])
      assert.is_nil(emu:record("i", "r"))                     -- the handler did not run
      local s2, t2, h2 = raw(emu, "GET", path("i"))
      assert.are.equal(204, s2)
      assert.are.equal("", t2)
      assert.are.equal("3", h2["retry-after"])
      assert.are.same({}, select(2, emu:control("GET", "/_emulator/faults")).faults)   -- used up
      assert.are.equal(200, (raw(emu, "PUT", path("i", "r"), cjson.encode(import_body()))))
      assert.truthy(emu:record("i", "r"))
    end)

    it("sends Retry-After as seconds, an HTTP-date, and retry-after-ms", function()
      fault({ status = 429, retry_after = "2" })
      fault({ status = 503, retry_after = 7, retry_after_ms = 1500 })
      fault({ status = 503, retry_after_date = 2 })
      local _, _, h1 = emu:api("GET", path("i"))
      assert.are.equal("2", h1["retry-after"])
      local _, _, h2 = emu:api("GET", path("i"))
      assert.are.equal("7", h2["retry-after"])
      assert.are.equal("1500", h2["retry-after-ms"])
      local _, _, h3 = emu:api("GET", path("i"))
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h3["retry-after"])
    end)

    it("delays before answering (and then answers for real)", function()
      fault({ delay = 0.6 })
      local started = helper.now()
      local status = emu:api("GET", path("i"))
      assert.are.equal(200, status)
      assert.is_true(helper.now() - started >= 0.55)
    end)

    it("drop closes the connection without an answer", function()
      fault({ action = "drop" })
      local status, err, info = emu:api("GET", path("i"))
      assert.is_nil(status)
      assert.are.equal(52, info.curl_exit, err)    -- "Empty reply from server"
    end)

    it("truncate announces more body than it sends", function()
      fault({ action = "truncate" })
      local status, err, info = emu:api("GET", path("i"))
      assert.is_nil(status)
      assert.are.equal(18, info.curl_exit, err)    -- "transfer closed with N bytes remaining"
      assert.truthy(#info.body > 0)
      assert.are.equal(200, (emu:api("GET", path("i"))))  -- the server is fine afterwards
    end)

    it("malformed answers 200 with a body that is not JSON", function()
      fault({ action = "malformed" })
      local status, body = raw(emu, "GET", path("i"))
      assert.are.equal(200, status)
      assert.is_false((pcall(cjson.decode, body)))
    end)

    it("hang never answers (the client times out) and does not block others", function()
      fault({ action = "hang" })
      local status, err, info = helper.http("GET", emu.url .. path("i"), { headers = AUTH, timeout = 1 })
      assert.is_nil(status)
      assert.are.equal(28, info.curl_exit, err)    -- "Operation timed out"
      assert.are.equal(200, (emu:api("GET", path("i"))))
    end)

    it("lists armed faults and DELETE clears them", function()
      fault({ status = 500, count = 3 })
      local _, body = emu:control("GET", "/_emulator/faults")
      assert.are.equal(1, #body.faults)
      assert.are.equal(3, body.faults[1].count)
      assert.are.equal(200, (emu:control("DELETE", "/_emulator/faults")))
      assert.are.equal(200, (emu:api("GET", path("i"))))
    end)

    it("refuses a malformed fault", function()
      for _, spec in ipairs({ { bogus = 1 }, { count = 0 }, { status = 42 }, { action = "explode" },
                              { path = "[" }, { error = { code = "x" }, body = "y" } }) do
        local status, body = emu:control("POST", "/_emulator/faults", spec)
        assert.are.equal(400, status)
        assert.are.equal("bad_request", body.error.code)
      end
    end)

    -- Lua reports a malformed pattern only when the matcher reaches it, so
    -- trying it on a sample lets "/%b" through (no sample gets past "/").
    it("refuses a path pattern that would raise when matched", function()
      for _, p in ipairs({ "/%b", "/v1/%b(", "/(a", "/a)", "/[a", "/[%]", "/%f", "/%fx", "/(a)%2", "/(a%1)",
                           "/%0", "/a%", "/x\0y", "/" .. ("(a)"):rep(33) }) do
        local status, body = emu:control("POST", "/_emulator/faults", { path = p, status = 500 })
        assert.are.equal(400, status, p)
        assert.matches("not a valid Lua pattern", body.error.message, 1, true)
      end
      for _, p in ipairs({ "/%$", "/[]]", "/[^]]", "/(a)%1", "/()x", "/%b()", "/%f[%w]a", "/a$", "/$x",
                           "^/a", ".*/db_1$" }) do
        assert.are.equal(201, (emu:control("POST", "/_emulator/faults", { path = p, status = 500 })), p)
      end
    end)

    -- What no check when arming catches: LuaJIT's "pattern too complex",
    -- raised on a subject long enough to nest 200 deep ("a?" 300 times).
    it("disarms a fault whose pattern raises when matched, and answers normally", function()
      fault({ path = "/v1/installations/" .. ("a?"):rep(300) .. "/resources", status = 500, count = 5 })
      assert.are.equal(200, (emu:api("GET", path("i"))))           -- no match, no raise
      assert.are.equal(1, #select(2, emu:control("GET", "/_emulator/faults")).faults)
      local long = path(("a"):rep(300))
      local status, body = emu:api("GET", long)
      assert.are.equal(200, status)
      assert.are.same({}, body.resources)
      assert.are.equal(0, #select(2, emu:control("GET", "/_emulator/faults")).faults)
      assert.are.equal(200, (emu:api("GET", long)))
    end)
  end)

  describe("rate limit", function()
    after_each(function() emu:control("DELETE", "/_emulator/rate-limit") end)

    it("answers Vercel's 429 after K requests in a window", function()
      assert.are.equal(201, (emu:control("POST", "/_emulator/rate-limit", { limit = 2, window = 30 })))
      local _, _, h1 = emu:api("GET", path("i"))
      assert.are.equal("2", h1["x-ratelimit-limit"])
      assert.are.equal("1", h1["x-ratelimit-remaining"])
      assert.are.equal(200, (emu:api("GET", path("i"))))
      local status, body, headers = emu:api("GET", path("i"))
      assert.are.equal(429, status)
      assert.are.equal("rate_limited", body.error.code)
      assert.are.equal("Rate limit exceeded", body.error.message)
      local lim = body.error.limit
      assert.are.equal(0, lim.remaining)
      assert.are.equal(2, lim.total)
      assert.is_true(lim.reset > os.time() and lim.reset <= os.time() + 31)
      assert.is_true(math.abs(lim.resetMs - lim.reset * 1000) < 1000)
      local ra = tonumber(headers["retry-after"])
      assert.is_true(ra >= 1 and ra <= 30)
      assert.are.equal("0", headers["x-ratelimit-remaining"])
      assert.are.equal(string.format("%d", lim.reset), headers["x-ratelimit-reset"])
    end)

    it("opens a new window when the old one ends", function()
      emu:control("POST", "/_emulator/rate-limit", { limit = 1, window = 1 })
      assert.are.equal(200, (emu:api("GET", path("i"))))
      assert.are.equal(429, (emu:api("GET", path("i"))))
      helper.sleep(1.1)
      assert.are.equal(200, (emu:api("GET", path("i"))))
    end)

    it("DELETE clears it", function()
      emu:control("POST", "/_emulator/rate-limit", { limit = 0, window = 60 })
      assert.are.equal(429, (emu:api("GET", path("i"))))
      emu:control("DELETE", "/_emulator/rate-limit")
      assert.are.equal(200, (emu:api("GET", path("i"))))
    end)
  end)
end)

describe("state file", function()
  local dir

  -- The names in a directory, sorted.
  local function listing(d)
    local names = {}
    for name in helper.capture("ls -A " .. helper.shell_quote(d)):gmatch("[^\n]+") do names[#names + 1] = name end
    table.sort(names)
    return names
  end

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. helper.shell_quote(dir))
  end)
  after_each(function() os.execute("rm -rf " .. helper.shell_quote(dir)) end)

  it("starts empty when the file is missing, and survives a restart", function()
    local file = dir .. "/state.json"
    local emu = helper.start_emulator({ token = TOKEN, state = file })
    assert.are.equal(0, #select(2, emu:api("GET", path("i"))).resources)
    raw(emu, "PUT", path("i", "r"), '{"productId":"p","name":"n","status":"ready","metadata":{"list":[]}}')
    local _, before = emu:api("GET", path("i", "r"))
    emu:stop()
    local saved = cjson.decode(helper.read_file(file))
    assert.are.equal(1, #saved.resources)
    local again = helper.start_emulator({ token = TOKEN, state = file })
    local status, after = again:api("GET", path("i", "r"))
    local _, text = raw(again, "GET", path("i", "r"))
    again:stop()
    assert.are.equal(200, status)
    assert.are.equal(before.internalId, after.internalId)
    assert.matches('"list":%[%]', text)
  end)

  it("rewrites the file after every change, atomically", function()
    local file = dir .. "/state.json"
    local emu = helper.start_emulator({ token = TOKEN, state = file })
    emu:api("PUT", path("i", "r"), import_body())
    assert.are.equal(1, #cjson.decode(helper.read_file(file)).resources)
    emu:api("DELETE", path("i", "r"))
    local text = helper.read_file(file)
    emu:stop()
    assert.matches('"resources":%[%]', text)
    assert.are.same({ "state.json", "state.json.lock" }, listing(dir))   -- no temporary file left
  end)

  -- The file holds secret values in clear: owner only, whatever the umask.
  it("writes the file readable by its owner only", function()
    local file = dir .. "/state.json"
    local function mode(f)
      local p = io.popen("stat -c %a " .. helper.shell_quote(f) .. " 2>/dev/null")
      local m = p:read("*l")
      p:close()
      return m
    end
    os.execute("umask 022; echo '{\"version\":1,\"seq\":0,\"resources\":[]}' > "
      .. helper.shell_quote(file))
    assert.are.equal("644", mode(file))
    local emu = helper.start_emulator({ token = TOKEN, state = file })
    emu:api("PUT", path("i", "r"), import_body())
    local m1 = mode(file)
    emu:api("DELETE", path("i", "r"))
    local m2 = mode(file)
    emu:stop()
    assert.are.equal("600", m1)
    assert.are.equal("600", m2)
  end)

  -- FILE.tmp may be another writer's (two emulators wrote one FILE.tmp, and
  -- renamed each other's half-written files): each save has a name of its own.
  it("saves through a temporary file of its own, never FILE.tmp", function()
    local file = dir .. "/state.json"
    helper.write_file(file .. ".tmp", "another writer's")
    local emu = helper.start_emulator({ token = TOKEN, state = file })
    emu:api("PUT", path("i", "r"), import_body())
    emu:api("PUT", path("i", "s"), import_body())
    emu:stop()
    assert.are.equal("another writer's", helper.read_file(file .. ".tmp"))
    assert.are.equal(2, #cjson.decode(helper.read_file(file)).resources)
    assert.are.same({ "state.json", "state.json.lock", "state.json.tmp" }, listing(dir))
  end)

  -- A second emulator on one file would overwrite the first one's data. The
  -- lock is the kernel's (flock): killing every process of the first
  -- emulator outright, with no chance to clean up, leaves no lock behind.
  it("refuses a second emulator on the same file; a killed one leaves no lock", function()
    local file = dir .. "/state.json"
    local first = helper.start_emulator({ token = TOKEN, state = file })
    finally(function() first:stop() end)
    assert.are.equal(200, (first:api("PUT", path("i", "r"), import_body())))
    local cmd = "timeout 10 " .. helper.shell_quote(helper.emulator_bin) .. " --port 0 --state "
        .. helper.shell_quote(file) .. " </dev/null 2>&1; echo \"exit $?\""
    local _, out = helper.popen_run(cmd)
    assert.matches("in use by another emulator", out, 1, true)
    local code = tonumber(out:match("exit (%d+)"))
    assert.is_true(code ~= 0 and code ~= 124, out)     -- 124: timeout ended a running one
    local nginx = assert(tonumber(helper.capture("ps -o pid= --ppid " .. first.pid):match("%d+")))
    local prefix = (helper.read_file("/proc/" .. nginx .. "/cmdline") or ""):match("%-p%z([^%z]+)")
    os.execute("kill -KILL " .. first.pid .. " " .. nginx)
    for _ = 1, 100 do                                  -- about 5 s
      if not helper.alive(first.pid) and not helper.alive(nginx) then break end
      helper.sleep(0.05)
    end
    assert.is_false(helper.alive(nginx))
    if prefix then os.execute("rm -rf " .. helper.shell_quote(prefix)) end
    local again = helper.start_emulator({ token = TOKEN, state = file })
    local status = again:api("GET", path("i", "r"))
    again:stop()
    assert.are.equal(200, status)
  end)

  it("refuses to start on a corrupt file", function()
    local file = dir .. "/state.json"
    local f = assert(io.open(file, "w"))
    f:write("not json")
    f:close()
    local ok, err = pcall(helper.start_emulator, { state = file })
    assert.is_false(ok)
    assert.matches("not an emulator state", tostring(err))
  end)
end)

describe("launcher", function()
  local function children(pid)
    local p = io.popen("ps -o pid= --ppid " .. pid)
    local out = {}
    for line in p:lines() do out[#out + 1] = tonumber(line) end
    p:close()
    return out
  end

  local function prefix_of(pid)
    local cmd = helper.read_file("/proc/" .. pid .. "/cmdline") or ""
    return cmd:match("%-p%z([^%z]+)")
  end

  it("--help documents the options and the default token", function()
    local ok, out = helper.popen_run(helper.shell_quote(helper.emulator_bin) .. " --help")
    assert.is_true(ok)
    assert.matches("%-%-port", out)
    assert.matches("%-%-state", out)
    assert.matches("emulator%-token", out)
  end)

  it("--port 0 picks a free port and answers with the default token", function()
    local emu = helper.start_emulator()
    finally(function() emu:stop() end)
    assert.is_true(emu.port >= 20000 and emu.port <= 60000)
    local status = helper.http("GET", emu.url .. path("i"),
                               { headers = { Authorization = "Bearer emulator-token" } })
    assert.are.equal(200, status)
  end)

  it("fails clearly when the port is taken", function()
    local emu = helper.start_emulator()
    finally(function() emu:stop() end)
    local cmd = helper.shell_quote(helper.emulator_bin) .. " --port " .. emu.port .. " 2>&1"
    local ok, out = helper.popen_run("timeout 20 " .. cmd)
    assert.is_falsy(ok)
    assert.matches("did not start", out)
  end)

  it("SIGTERM stops nginx and removes the prefix", function()
    local emu = helper.start_emulator()
    local kids = children(emu.pid)
    assert.are.equal(1, #kids)
    local prefix = prefix_of(kids[1])
    assert.truthy(prefix)
    assert.truthy(helper.read_file(prefix .. "/nginx.conf"))
    emu:stop("TERM")
    assert.is_false(helper.alive(emu.pid))
    assert.is_false(helper.alive(kids[1]))
    assert.is_nil(helper.read_file(prefix .. "/nginx.conf"))
    assert.is_falsy(helper.execute("test -e " .. helper.shell_quote(prefix)))
  end)

  -- KILL gives the launcher no chance to clean up: nginx notices that it
  -- was orphaned and stops on its own, prefix removed.
  it("nginx stops by itself when the launcher is killed", function()
    local emu = helper.start_emulator()
    finally(function() emu:stop() end)
    local kids = children(emu.pid)
    assert.are.equal(1, #kids)
    local prefix = prefix_of(kids[1])
    assert.truthy(helper.read_file(prefix .. "/nginx.conf"))
    assert.truthy(helper.execute("kill -KILL " .. emu.pid))
    for _ = 1, 100 do                               -- about 5 s
      if not helper.alive(kids[1]) then break end
      helper.sleep(0.05)
    end
    assert.is_false(helper.alive(kids[1]), "nginx outlived its launcher")
    assert.is_falsy(helper.execute("test -e " .. helper.shell_quote(prefix)))
  end)

  -- The suite's own side of it: a test process killed outright (a CI
  -- timeout) takes the servers it started with it (helper.spawn).
  it("stops when the test process that started it is killed", function()
    local ok, out = helper.run_lua([[
      local helper = require "helper"
      local emu = helper.start_emulator()
      local nginx = io.popen("ps -o pid= --ppid " .. emu.pid):read("*a")
      print("pids " .. emu.pid .. " " .. nginx)
      io.stdout:flush()
      os.execute("kill -KILL " .. helper.read_file("/proc/self/stat"):match("^%d+"))
    ]])
    local launcher, nginx = out:match("pids (%d+)%s+(%d+)")
    assert(launcher, out)
    assert.is_false(ok) -- killed, not a clean exit
    for _ = 1, 100 do                               -- about 5 s
      if not helper.alive(launcher) and not helper.alive(nginx) then break end
      helper.sleep(0.05)
    end
    assert.is_false(helper.alive(launcher), "the emulator outlived the test process")
    assert.is_false(helper.alive(nginx), "nginx outlived the test process")
  end)

  it("keeps the token out of the nginx config", function()
    local emu = helper.start_emulator({ token = "very-secret-token" })
    finally(function() emu:stop() end)
    local conf = helper.read_file(prefix_of(children(emu.pid)[1]) .. "/nginx.conf")
    assert.is_nil(conf:find("very-secret-token", 1, true))
    assert.matches("127%.0%.0%.1:", conf)
  end)
end)

describe("TLS", function()
  it("serves HTTPS with --tls-cert/--tls-key", function()
    local cert, emu = helper.make_certificate(), nil
    finally(function()   -- busted keeps one finally per test: do both here
      if emu then emu:stop() end
      cert.remove()
    end)
    emu = helper.start_emulator({ token = TOKEN, tls_cert = cert.cert, tls_key = cert.key })
    assert.matches("^https://127%.0%.0%.1:%d+$", emu.url)
    local status, body = emu:api("GET", path("i"))
    assert.are.equal(200, status)
    assert.are.same(0, #body.resources)
    local out = io.popen("curl -s --max-time 10 --cacert " .. helper.shell_quote(cert.cert)
      .. " -o /dev/null -w '%{http_code}' --resolve localhost:" .. emu.port .. ":127.0.0.1 "
      .. helper.shell_quote("https://localhost:" .. emu.port .. path("i"))):read("*a")
    assert.are.equal("401", out)   -- verified TLS; no token given
  end)

  -- What the client negotiated is in the request log, as `protocol`.
  for _, case in ipairs({ { args = {}, want = "HTTP/2.0" }, { args = { "--no-http2" }, want = "HTTP/1.1" } }) do
    it("offers HTTP/2 over TLS unless told --no-http2 (" .. case.want .. ")", function()
      local cert, emu = helper.make_certificate(), nil
      finally(function()
        if emu then emu:stop() end
        cert.remove()
      end)
      emu = helper.start_emulator({ token = TOKEN, tls_cert = cert.cert, tls_key = cert.key, args = case.args })
      local out = io.popen("curl -s --http2 --max-time 10 --cacert " .. helper.shell_quote(cert.cert)
        .. " -o /dev/null -w '%{http_version}' -H 'Authorization: Bearer " .. TOKEN .. "' --resolve localhost:"
        .. emu.port .. ":127.0.0.1 " .. helper.shell_quote("https://localhost:" .. emu.port .. path("i"))):read("*a")
      assert.are.equal(case.want == "HTTP/2.0" and "2" or "1.1", out)
      local log = emu:requests()
      assert.are.equal(1, #log)
      assert.are.equal(case.want, log[1].protocol)
    end)
  end
end)

-- HTTP/2 has no raw socket to write a short answer on (ngx.req.socket(true)
-- is refused there, and the fault was a 500): the emulator announces the
-- length, sends half the body, then resets the stream.
describe("truncate over TLS and HTTP/2", function()
  local emu = helper.use_emulator({ token = TOKEN, tls = true })

  it("resets the stream mid-body, and the server is fine afterwards", function()
    assert.are.equal(201, (emu:control("POST", "/_emulator/faults", { action = "truncate" })))
    local status, err, info = helper.http("GET", emu.url .. path("i"), { headers = AUTH })
    assert.is_nil(status)
    assert.are.equal(92, info.curl_exit, err)          -- "HTTP/2 stream 1 was not closed cleanly"
    assert.matches("INTERNAL_ERROR", err, 1, true)
    assert.truthy(#info.body > 0)
    assert.are.equal(200, (emu:api("GET", path("i"))))
    local log = emu:requests()
    assert.are.equal(2, #log)
    assert.are.equal("HTTP/2.0", log[1].protocol)
  end)
end)

describe("helper", function()
  it("closed_port finds a port that refuses connections", function()
    local status, err = helper.http("GET", "http://127.0.0.1:" .. helper.closed_port() .. "/")
    assert.is_nil(status)
    assert.matches("onnect", err)
  end)

  it("run_lua runs code with extra environment and reports failure", function()
    local ok, out = helper.run_lua('print(os.getenv("X_SPEC"))', { X_SPEC = "it's here" })
    assert.is_true(ok)
    assert.are.equal("it's here\n", out)
    local bad, msg = helper.run_lua('error("boom")')
    assert.is_false(bad)
    assert.matches("boom", msg)
  end)
end)
