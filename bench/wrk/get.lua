-- GET /v1/credentials/{id}: metadata read of a random seeded credential.
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
function request()
  return wrk.format("GET", "/v1/credentials/" .. random_id(), auth_header())
end
