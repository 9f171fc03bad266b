-- Single-alert POSTs to Alerta's /alert: the alert bench/alerta_bench.py's Python senders post.
dofile(os.getenv("WRK_SCRIPTS") .. "/figures.lua")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  n = n + 1
  local body = string.format(
    '{"resource":"router-%d","event":"LinkDown-%d","environment":"Production",'
      .. '"severity":"major","service":["network"],'
      .. '"text":"Interface Gi0/%d changed state to down"}',
    n % 50, n % 100, n % 48)
  return wrk.format(nil, "/alert", nil, body)
end
