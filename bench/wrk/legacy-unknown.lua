-- The attack path for imported keys (LEGACY_KEYS on): keys of djangorestframework-api-key's
-- shape with random, unknown prefixes (each one KV read until the address is blocked), from one
-- client address, as a key-guessing loop would send them.
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local function random(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, #chars)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end
function request()
  return wrk.format("GET", nil, {
    ["Authorization"] = "Api-Key " .. random(8) .. "." .. random(32),
    ["CF-Connecting-IP"] = "192.0.2.2",
  })
end
