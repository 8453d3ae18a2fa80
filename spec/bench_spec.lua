-- `make bench` itself, run small so that it cannot rot: every row is
-- printed with its figures.  Nothing here is timed or compared: the figures
-- are the bench's to print (README, Performance), never the suite's to assert.
local helper = require "helper"

-- The bench runs on Lua 5.4 (the Makefile's LUA); once is enough: not again
-- under `make asan` or `make valgrind` (MP_SANITIZER), where its processes
-- would load the uninstrumented core, and where CI runs it beside `make
-- test`'s bench, both writing build/bench/raw_curl.
local describe_bench = _VERSION == "Lua 5.4" and type(jit) ~= "table" and not os.getenv("MP_SANITIZER")
  and describe or pending

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return ok == true or ok == 0 or code == 0, out
end

describe_bench("make bench", function()
  local ok, out

  lazy_setup(function()
    ok, out = sh("cd " .. helper.shell_quote(helper.root)
      .. " && BENCH_N=200 BENCH_REQUESTS=1000 BENCH_TLS_N=3 timeout 120 make -s bench")
  end)

  it("runs to the end against its own nginx", function()
    assert.is_true(ok, out)
  end)

  it("prints each comparison with both figures and their ratio", function()
    local figures = "%s+[%d.]+%s+[%d.]+%s+[%d.]+x"
    for _, row in ipairs({
      "sequential, 200 requests", "8 in flight, 200 requests", "8 in flight, HTTPS %+ HTTP/2",
      "sequential, 10 requests", "8 in flight, 50 requests",
      "validate%+encode vs encode, 2000 times",
      "library requests/s", "library CPU ms per request", "raw libcurl requests/s",
    }) do
      assert.truthy(out:find(row .. figures), row .. " missing in:\n" .. out)
    end
  end)

  it("prints peak memory at a tenth, half and all of the requests", function()
    for _, n in ipairs({ 100, 500, 1000 }) do
      assert.truthy(out:find(("after %d requests%%s+%%d+%%s+%%d+%%s+%%d"):format(n)), out)
    end
  end)
end)
