-- POST /v1/credentials: a Stripe api_key credential with a unique name.
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
local abc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
function request()
  counter = counter + 1
  local k = {}
  for i = 1, 24 do
    local r = math.random(#abc)
    k[i] = abc:sub(r, r)
  end
  local body = string.format('{"service":"stripe","name":"wrk %d-%d ' ..
    'tag-%03d","auth_type":"api_key","notes":"created by the benchmark",' ..
    '"secret":{"key":"sk_test_%s"}}', tno or 0, counter,
    math.random(0, 99), table.concat(k))
  local h = auth_header()
  h["Content-Type"] = "application/json"
  return wrk.format("POST", "/v1/credentials", h, body)
end
