-- The job-trigger route with a distinct Idempotency-Key per request (unique per wrk thread).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = "Api-Key " .. os.getenv("KEY"),
    ["Idempotency-Key"] = os.getenv("RUN_ID") .. "-" .. tostring(tid) .. "-" .. counter,
    ["Content-Type"] = "application/json",
  }, '{"params":{}}')
end
