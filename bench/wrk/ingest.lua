-- Single-event POSTs to MUTT's /api/v2/ingest, as bench/pipeline_bench.py writes them: hostnames
-- bench-<RUN>-<n> (so the run's audit rows can be counted), one event in FORWARD_EVERY forwardable
-- under the seed rules (the interface-down line; none with FORWARD_EVERY=0), the others not.
dofile(os.getenv("WRK_SCRIPTS") .. "/figures.lua")
local run = os.getenv("RUN")
local forward_every = tonumber(os.getenv("FORWARD_EVERY") or "100")
local api_key = os.getenv("INGEST_API_KEY")
local others = {
  "BGP neighbor 10.0.%d.1 Down: hold time expired",
  "%%SYS-5-CONFIG_I: Configured from console by admin on vty%d",
  "CPU utilization at %d%% for 5 minutes",
  "user admin login failed from 10.1.1.%d",
  "Power supply %d failed",
}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if api_key and api_key ~= "" then wrk.headers["X-API-Key"] = api_key end

request = function()
  n = n + 1
  local text
  if forward_every > 0 and n % forward_every == 0 then
    text = string.format("Interface GigabitEthernet0/%d changed state to down", n % 48)
  else
    text = string.format(others[n % #others + 1], n % 48)
  end
  local body = string.format(
    '[{"timestamp":"%s","hostname":"bench-%s-%d","message":"%s","syslog_severity":%d,'
      .. '"program":"bench"}]',
    os.date("!%Y-%m-%dT%H:%M:%SZ"), run, n % 500, text, 2 + n % 5)
  return wrk.format(nil, "/api/v2/ingest", nil, body)
end
