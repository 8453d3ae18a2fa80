-- Documentation is code: every ```lua block of the README and every script in
-- examples/ runs against the emulator, and a block's `-->` lines are its output.
local helper = require "helper"

local function read(path)
  return assert(helper.read_file(path), path)
end

local function lua_blocks(text)
  local blocks = {}
  for code in text:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
  return blocks
end

-- Expected output: the `-->` lines, joined, white space folded.
local function expected_output(code)
  local lines = {}
  for line in code:gmatch("%-%-> ([^\n]*)") do lines[#lines + 1] = line end
  return #lines > 0 and table.concat(lines, " ") or nil
end

local function fold(s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

describe("documentation", function()
  local emu = helper.use_emulator({ token = "docs-token" })

  local function run(code)
    local env = { VERCEL_API_URL = emu.url, VERCEL_TOKEN = "docs-token" }
    return helper.run_lua(code, env)
  end

  it("README blocks run and print what they say", function()
    local blocks = lua_blocks(read(helper.root .. "/README.md"))
    assert.is_true(#blocks >= 2)
    for i, code in ipairs(blocks) do
      emu:reset()
      local ok, out = run(code)
      assert.is_true(ok, ("README lua block %d failed:\n%s"):format(i, out))
      local want = expected_output(code)
      if want then assert.equals(fold(want), fold(out)) end
    end
  end)

  it("examples/main.lua runs the life of a resource", function()
    emu:reset()
    local ok, out = run(read(helper.root .. "/examples/main.lua"))
    assert.is_true(ok, out)
    for _, step in ipairs({ "imported:", "updated:", "read back:", "resumed:", "secrets:", "listed:",
      "deleted:", "refused:" }) do
      assert.truthy(out:find(step, 1, true), step)
    end
    assert.is_nil(out:find("docs-token", 1, true))
    assert.is_nil(out:find("postgres://", 1, true))
  end)
end)
