-- POST /v1/credentials/{id}/use: brokered call to the stand-in provider
-- (hv-httpd0 on loopback, via HSMVAULT_SERVICE_STRIPE_BASE_URL).
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
local body = '{"method":"GET","path":"/v1/balance"}'
function request()
  local h = auth_header()
  h["Content-Type"] = "application/json"
  return wrk.format("POST", "/v1/credentials/" .. random_id() .. "/use", h,
    body)
end
