-- common.lua: shared by every bench/wrk script (loaded with dofile).
-- Environment: HV_BENCH_KEYFILE (an API key, or one per line with
-- HV_BENCH_MANYKEYS=1), HV_BENCH_IDS (credential ids, one a line).
-- done() prints one JSON line that bench/run reads.

local function lines(path)
  local t = {}
  if path == nil or path == "" then return t end
  local f = io.open(path, "r")
  if f == nil then error("cannot read " .. path) end
  for l in f:lines() do
    if l ~= "" then t[#t + 1] = l end
  end
  f:close()
  return t
end

keys = lines(os.getenv("HV_BENCH_KEYFILE"))
ids = lines(os.getenv("HV_BENCH_IDS"))
many_keys = os.getenv("HV_BENCH_MANYKEYS") == "1"

-- HV_BENCH_PACE_MS: each connection waits this long before each request
-- (wrk's delay()): a paced load below saturation, for the latency at a
-- given rate rather than at the most the machine can do.
local pace_ms = tonumber(os.getenv("HV_BENCH_PACE_MS") or "0") or 0
if pace_ms > 0 then
  function delay() return pace_ms end
end

local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("tno", thread_no)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tno or 0) * 7919)
  counter = 0
end

function auth_header()
  if #keys == 0 then return {} end
  local k = keys[1]
  if many_keys then k = keys[math.random(#keys)] end
  return { ["Authorization"] = "Bearer " .. k }
end

function random_id()
  return ids[math.random(#ids)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f,"non2xx":%d,' ..
    '"sock_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.status, e.connect + e.read + e.write + e.timeout))
end
