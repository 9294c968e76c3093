-- The attack path: keys with a wrong checksum (refused before any storage read), from one
-- client address, as a key-guessing loop would send them.
local hex = "0123456789abcdef"
function request()
  local t = {}
  for i = 1, 72 do
    local n = math.random(1, 16)
    t[i] = hex:sub(n, n)
  end
  return wrk.format("GET", nil, {
    ["Authorization"] = "Api-Key kg_" .. table.concat(t),
    ["CF-Connecting-IP"] = "192.0.2.1",
  })
end
