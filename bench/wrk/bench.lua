-- One wrk script for every HTTP figure of scripts/bench.sh, configured from the environment:
--   BENCH_METHOD (GET), BENCH_BODY (form body), BENCH_ORIGIN (Origin header for POSTs),
--   BENCH_COOKIES (a file with one Cookie header value per line; requests take them in turn,
--   so the load is spread over several signed-in accounts).
-- done() prints one machine-readable line: BENCH requests=… rate=… p50_us=… p99_us=… non2xx=…

local cookies = {}
local counter = 0

function init(args)
  local path = os.getenv("BENCH_COOKIES")
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        table.insert(cookies, line)
      end
    end
  end
  wrk.method = os.getenv("BENCH_METHOD") or "GET"
  local body = os.getenv("BENCH_BODY")
  if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  local origin = os.getenv("BENCH_ORIGIN")
  if origin and origin ~= "" then
    wrk.headers["Origin"] = origin
  end
  -- One client program, as the probe order (scripts/bench.sh) names it: the order screening
  -- treats another user agent as a new device, which needs a step-up.
  wrk.headers["User-Agent"] = "cryptopulse-bench"
end

function request()
  if #cookies > 0 then
    counter = counter + 1
    wrk.headers["Cookie"] = cookies[(counter % #cookies) + 1]
  end
  return wrk.format()
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "BENCH requests=%d secs=%.3f rate=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.errors.status, errors))
end
