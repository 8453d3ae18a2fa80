-- core.redact and session:redact (csrc/redact.c): the one cut that keeps the
-- token and secret values out of errors, log lines and the command line's
-- output.  Every byte of every occurrence goes, one label per run.
local helper = require "helper"
local core = require "vercel.marketplace.core"

local TOKEN = "tok-0123456789abcdef"

describe("core.redact", function()
  it("cuts the token and each secret, every occurrence", function()
    assert.equals("a [token] b [secret] c [secret]",
      core.redact("a " .. TOKEN .. " b pg-secret c pg-secret", TOKEN, { "pg-secret" }))
  end)

  it("leaves values too short to be told from ordinary text", function()
    assert.equals(core.MIN_CUT_TOKEN, 8)
    assert.equals(core.MIN_CUT_SECRET, 4)
    assert.equals("a short abc", core.redact("a short abc", "short", { "abc" }))
  end)

  it("cuts a secret that starts with another whole, and one that overlaps another's end", function()
    assert.equals("x [secret] y", core.redact("x pg-password-0123 y", nil, { "pg-password", "pg-password-0123" }))
    assert.equals("got [secret]", core.redact("got FIRST_SECRET_TAIL_zyxw", nil, { "FIRST_SECRET", "SECRET_TAIL_zyxw" }))
    assert.equals("[secret]", core.redact("aaaaaa", nil, { "aaaa" }))
  end)

  it("takes several tokens, and labels a run holding one as the token", function()
    assert.equals("[token] and [token]", core.redact("tok-aaaaaaaa and tok-bbbbbbbb", { "tok-aaaaaaaa", "tok-bbbbbbbb" }))
    assert.equals("[token]", core.redact("tok-aaaaaaaa-secret", { "tok-aaaaaaaa" }, { "aaaa-secret" }))
  end)

  it("handles an 8 MB text of one byte and a value of 4096 of it", function()
    local out = core.redact(("a"):rep(8 * 1024 * 1024) .. "b", ("a"):rep(4096))
    assert.equals("[token]b", out)
  end)

  it("takes 20,000 secrets (more than LuaJIT's C stack holds)", function()
    local many = {}
    for i = 1, 20000 do many[i] = ("secret-%05d"):format(i) end
    assert.equals("x [secret] y", core.redact("x secret-19999 y", nil, many))
  end)

  -- The needle array is sized before it is allocated, and the allocation
  -- may run a finalizer that grows the caller's table (ASan: a heap
  -- overflow when the length was read again).
  it("writes no more needles than it sized, whatever a finalizer does", function()
    local ok, out = helper.run_lua([[
      local core = require "vercel.marketplace.core"
      local grown = 0
      for _ = 1, 200 do -- a few are enough to hit it; valgrind runs this 20 times slower
        local s = { "abcd" }
        for _ = 1, 50 do
          setmetatable({}, { __gc = function() for j = 1, 200 do s[#s + 1] = "zzzz" .. j end end })
        end
        assert(core.redact(("x"):rep(100) .. "abcd", nil, s) == ("x"):rep(100) .. "[secret]")
        if #s > 1 then grown = grown + 1 end
      end
      print("grown " .. (grown > 0 and "yes" or "no"))
    ]])
    assert.is_true(ok, out)
    -- 5.1 and LuaJIT run these finalizers elsewhere: the window is not hit there
    assert.equals(_VERSION == "Lua 5.1" and out or "grown yes\n", out)
  end)
end)

describe("session:redact", function()
  it("cuts the session's token, also once the session is closed", function()
    local s = core.session({ token = TOKEN })
    assert.equals("x [token] [secret]", s:redact("x " .. TOKEN .. " abcd-1", { "abcd-1" }))
    s:close()
    assert.equals("x [token]", s:redact("x " .. TOKEN))
  end)
end)
