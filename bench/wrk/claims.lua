-- wrk script for the benchmark: one claim per request, each with the next line's bearer token
-- (a different buyer each time; wraps around at the end of the file), requests built once in init.
--   wrk -t1 -c100 -d10s -s bench/wrk/claims.lua URL -- <tokens file> <path>
-- The line number also goes out as X-Buyer (the usual builds' servers read it instead of a token).
-- With WRK_COUNT=1, answers are counted by HTTP status (it costs the generator some CPU, so the
-- benchmark counts during warm-up only). done() prints one JSON line for bench/lib/wrk.ts.
local reqs = {}
local n = 0
local i = 0
counts = {}

function init(args)
  local file, path = args[1], args[2]
  for line in io.lines(file) do
    n = n + 1
    reqs[n] = wrk.format("POST", path, { ["Authorization"] = "Bearer " .. line, ["X-Buyer"] = tostring(n), ["Content-Length"] = "0" })
  end
  if os.getenv("WRK_COUNT") ~= "1" then response = nil end
end

function request()
  i = i % n + 1
  return reqs[i]
end

response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local statuses = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if type(c) == "table" then
      for k, v in pairs(c) do statuses[#statuses + 1] = string.format("\"%d\":%d", k, v) end
    end
  end
  io.write(string.format("WRK_RESULT {\"requests\":%d,\"duration_us\":%d,\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"status_errors\":%d,\"timeouts\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"statuses\":{%s}}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(statuses, ",")))
end
