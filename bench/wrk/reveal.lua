-- GET /v1/credentials/{id}/secret: reveal (decrypt + audited).
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
function request()
  return wrk.format("GET", "/v1/credentials/" .. random_id() .. "/secret",
    auth_header())
end
