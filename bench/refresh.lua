-- wrk script: POST accounts-refresh, each connection walking its own users in order, so
-- that (with enough seeded users) nearly every request finds a stale user and triggers.
-- Users are seeded by bench/seed.py with ids 00000000-0000-4000-8000-<12-digit n>.
local key = os.getenv("FRESHET_BENCH_KEY")
local users = tonumber(os.getenv("FRESHET_BENCH_USERS"))
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("FRESHET_BENCH_THREADS"))
  per_thread = math.floor(users / nthreads)
  next_user = (tid - 1) * per_thread
  last_user = next_user + per_thread - 1
  headers = { ["x-api-key"] = key }
end

function request()
  local n = next_user
  next_user = next_user + 1
  if next_user > last_user then next_user = last_user - per_thread + 1 end
  local path = string.format("/v1/users/00000000-0000-4000-8000-%012d/accounts-refresh", n)
  return wrk.format("POST", path, headers, nil)
end

status_counts = {}
function response(status, headers, body)
  status_counts[status] = (status_counts[status] or 0) + 1
end

function done(summary, latency, requests)
  -- Per-thread status counts are not merged by wrk; the server's job count is the check.
end
