-- GET of the URL given to wrk, with no Authorization header (healthz of
-- the server; any path of the empty MHD handler).
dofile(os.getenv("HV_BENCH_LUA") .. "/common.lua")
