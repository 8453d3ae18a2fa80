-- types/vercel-marketplace.lua (annotations for lua-language-server) against
-- the code and the schema, so it cannot drift; and the LDoc reference builds
-- without a warning.
local helper = require "helper"
local core = require "vercel.marketplace.core"
local marketplace = require "vercel.marketplace"
local resource = require "vercel.marketplace.resource"

local META = helper.root .. "/types/vercel-marketplace.lua"
local NS = "vercel.marketplace."

-- "billing_plan_type" -> "BillingPlanType"
local function camel(name)
  return (name:gsub("^%l", string.upper):gsub("_(%l)", string.upper))
end

-- The meta file read as LuaLS would: classes with their fields, aliases with
-- their values, and the functions declared on each class.
local function read_meta(text)
  local meta = { classes = {}, aliases = {}, functions = {} }
  local class, locals = nil, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^%-%-%-@class ([%w_.]+)")
    local alias, values = line:match('^%-%-%-@alias ([%w_.]+) (".*)$')
    local field, opt, ftype = line:match("^%-%-%-@field ([%w_]+)(%??) (%S+)")
    local var = line:match("^local ([%w_]+) = {}")
    local owner, fname = line:match("^function ([%w_]+)[.:]([%w_]+)%(")
    if name then
      class = name
      meta.classes[name] = meta.classes[name] or {}
    elseif alias then
      meta.aliases[alias] = {}
      for v in values:gmatch('"([^"]+)"') do meta.aliases[alias][#meta.aliases[alias] + 1] = v end
    elseif field and class then
      meta.classes[class][field] = { optional = opt == "?", type = ftype }
    elseif var and class then
      locals[var] = class
    elseif owner and locals[owner] then
      local fns = meta.functions[locals[owner]] or {}
      meta.functions[locals[owner]] = fns
      fns[fname] = true
    end
    if not line:match("^%-%-%-") and not var then class = nil end
  end
  return meta
end

-- The public functions of a table (names not starting with `_`).
local function public_functions(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

-- The field rows of every `mp_field` array of csrc/schema.c:
-- {array = {{name, optional, absent_in_update, words}, ...}}.
local function read_schema(text)
  local arrays = {}
  for array, rows in text:gmatch("static const mp_field ([%w_]+)%[%] = {(.-)\n};") do
    local fields = {}
    for macro, name, rest in rows:gmatch('(%u+)%("([^"]+)",?%s*([^\n]*)%),') do
      local args = {}
      for a in rest:gmatch("[^,%s]+") do args[#args + 1] = a end
      local req = (macro == "ROW" and args[2]) or ((macro == "STRING" or macro == "ENUM" or macro == "ARRAY") and args[1])
      fields[#fields + 1] = {
        name = name, optional = req ~= "REQ", absent_in_update = rest:find("MP_U_ABSENT", 1, true) ~= nil,
        words = macro == "ENUM" and args[2] or nil,
      }
    end
    arrays[array] = fields
  end
  return arrays
end

-- Which classes of the meta file describe which descriptor of schema.c.
local CLASSES = {
  detail_fields = { "BillingPlanDetail" },
  billing_plan_fields = { "BillingPlan" },
  notification_fields = { "Notification" },
  overrides_fields = { "EnvironmentOverrides" },
  secret_fields = { "Secret" },
  secrets_body_fields = { "SecretsBody" },
  resource_fields = { "ImportBody", "UpdateBody" },
}

describe("types/vercel-marketplace.lua", function()
  local text = helper.read_file(META)
  local meta = read_meta(text)

  it("is a LuaLS meta file and valid Lua", function()
    assert.truthy(text:match("^%-%-%-@meta"))
    assert.truthy(loadfile(META))
  end)

  it("declares every public function of the module, installations, resources and errors", function()
    local inst = marketplace.installation("icfg_types", { token = "t" })
    local resource_methods = getmetatable(resource.wrap(inst, {})).__index
    local cases = {
      { "vercel.marketplace", marketplace },
      { NS .. "Installation", getmetatable(inst).__index },
      { NS .. "Resource", resource_methods },
      { NS .. "error", marketplace.error },
    }
    for _, case in ipairs(cases) do
      local names = public_functions(case[2])
      assert.is_true(#names > 0, case[1])
      for _, name in ipairs(names) do
        assert.is_true((meta.functions[case[1]] or {})[name] == true,
          ("%s.%s is not in the meta file"):format(case[1], name))
      end
    end
    for _, name in ipairs({ "import_many", "update_many", "delete_many" }) do
      assert.is_true(meta.functions[NS .. "Installation"][name], name)
    end
    inst:close()
  end)

  it("declares every public field of the module and every option", function()
    local module = meta.classes["vercel.marketplace"]
    for k, v in pairs(marketplace) do
      if type(k) == "string" and not k:match("^_") and type(v) ~= "function" then
        assert.truthy(module[k], "marketplace." .. k)
      end
    end
    local options = meta.classes[NS .. "Options"]
    assert.truthy(options.token and not options.token.optional)
    for k in pairs(marketplace.defaults) do
      assert.truthy(options[k], "option " .. k)
      assert.is_true(options[k].optional, "option " .. k)
    end
  end)

  it("has every enum value as an alias union and as constants", function()
    local n = 0
    for name, values in pairs(core.enums) do
      n = n + 1
      assert.same(values, meta.aliases[NS .. camel(name)], name)
      local constants = meta.classes[NS .. camel(name) .. "Constants"]
      assert.truthy(constants, name)
      local fields = {}
      for k, f in pairs(constants) do
        fields[#fields + 1] = k
        assert.equals('"' .. k .. '"', f.type)
      end
      table.sort(fields)
      local sorted = { (table.unpack or unpack)(values) }
      table.sort(sorted)
      assert.same(sorted, fields, name)
    end
    assert.is_true(n >= 4)
  end)

  it("has every body field of csrc/schema.c, required or optional as there, and no other", function()
    local schema = read_schema(helper.read_file(helper.root .. "/csrc/schema.c"))
    local n = 0
    for array, fields in pairs(schema) do
      n = n + 1
      assert.truthy(CLASSES[array], "no class of the meta file is mapped to " .. array .. " (spec/types_spec.lua)")
      for _, cname in ipairs(CLASSES[array]) do
        local class = assert(meta.classes[NS .. cname], cname)
        local update = cname == "UpdateBody"
        local want = {}
        for _, f in ipairs(fields) do
          if not (update and f.absent_in_update) then
            want[f.name] = true
            local got = class[f.name]
            assert.truthy(got, ("%s.%s is not in the meta file"):format(cname, f.name))
            assert.equals(update or f.optional, got.optional, ("%s.%s: optional?"):format(cname, f.name))
            if f.words then
              assert.truthy(got.type:find(NS .. camel(f.words), 1, true), ("%s.%s: %s"):format(cname, f.name, got.type))
            end
          end
        end
        for name in pairs(class) do
          assert.truthy(want[name], ("%s.%s is not in the schema"):format(cname, name))
        end
      end
    end
    assert.is_true(n >= 7)
  end)
end)

describe("the API reference (make docs)", function()
  local ldoc = io.open("/usr/bin/ldoc", "r")
  if ldoc then ldoc:close() end

  it("builds from the LDoc comments without a warning", function()
    if not ldoc then return pending("ldoc is not installed") end
    local dir = os.tmpname()
    os.remove(dir)
    local p = assert(io.popen("cd " .. helper.shell_quote(helper.root) .. " && ldoc --dir "
      .. helper.shell_quote(dir) .. " . 2>&1; echo \"<exit $?>\""))
    local out = p:read("*a")
    p:close()
    local f = io.open(dir .. "/modules/vercel.marketplace.html", "r")
    local html = f and f:read("*a") or ""
    if f then f:close() end
    os.execute("rm -rf " .. helper.shell_quote(dir))
    assert.truthy(out:find("<exit 0>", 1, true), out)
    for line in out:gmatch("[^\n]+") do
      assert.truthy(line:match("^reading configuration") or line:match("^output written") or line:match("^<exit"),
        "ldoc: " .. line)
    end
    for _, name in ipairs({ "import_many", "update_many", "delete_many", "update_secrets", "validate" }) do
      assert.truthy(html:find(name, 1, true), name)
    end
  end)
end)
