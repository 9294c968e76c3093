-- The job-trigger route with a distinct Idempotency-Key per request (unique per wrk thread).
-- KEYS: comma-separated API keys, used in turn: one key holds at most 1,000 idempotency
-- records (docs/CONTRACT.md section 6), and a run makes more triggers than that.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local keys = {}
for k in string.gmatch(os.getenv("KEYS"), "[^,]+") do
  table.insert(keys, k)
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = "Api-Key " .. keys[(counter % #keys) + 1],
    ["Idempotency-Key"] = os.getenv("RUN_ID") .. "-" .. tostring(tid) .. "-" .. counter,
    ["Content-Type"] = "application/json",
  }, '{"params":{}}')
end
