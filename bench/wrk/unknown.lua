-- Well-formed keys that were never issued (one KV read each), each from a fresh client address
-- so that the failed-attempt throttle stays out of the way.
local hex = "0123456789abcdef"
local n = 0
function request()
  n = n + 1
  return wrk.format("GET", nil, {
    ["Authorization"] = "Api-Key " .. os.getenv("UNKNOWN_KEY"),
    ["CF-Connecting-IP"] = "2001:db8::" .. string.format("%x", n % 65536) .. ":" .. string.format("%x", math.random(1, 65535)),
  })
end
