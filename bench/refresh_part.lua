-- wrk script: bench/refresh.lua on one part of the seeded users, for several wrk processes
-- at once (scripts/loadbench REPLICAS=2: one wrk per replica). FRESHET_BENCH_USERS is the
-- part's size and FRESHET_BENCH_OFFSET the number of its first user, so that two processes
-- walk disjoint users and nearly every request still finds a stale one.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "refresh.lua")

local refresh_init = init
function init(args)
  refresh_init(args)
  local offset = tonumber(os.getenv("FRESHET_BENCH_OFFSET") or "0")
  next_user = next_user + offset
  last_user = last_user + offset
end
