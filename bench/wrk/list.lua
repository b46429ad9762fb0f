-- GET /v1/credentials?q=tag-NNN: list with a search; each tag matches 1%
-- of the seeded credentials (100 of 10,000), one page of 50 comes back.
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
function request()
  local q = string.format("tag-%03d", math.random(0, 99))
  return wrk.format("GET", "/v1/credentials?q=" .. q, auth_header())
end
