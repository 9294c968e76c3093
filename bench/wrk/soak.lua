-- Soak: a valid key on a proxied GET; counts 5xx and wrong answers (any body other than the
-- origin's) per thread, reported by done().
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  wrong = 0
  server_errors = 0
  wrk.headers["Authorization"] = "Api-Key " .. os.getenv("KEY")
end
function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  elseif status ~= 200 or body ~= os.getenv("EXPECTED_BODY") then
    wrong = wrong + 1
  end
end
function done(summary, latency, requests)
  local w, e = 0, 0
  for _, t in ipairs(threads) do
    w = w + t:get("wrong")
    e = e + t:get("server_errors")
  end
  io.write(string.format("SOAK wrong=%d server_errors=%d\n", w, e))
end
