-- Submit a small job, then delete it, over and over: each wrk thread has one connection,
-- so its submit always comes before its delete.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n, submitted = 0, false
local source = os.getenv("SOURCE")

function request()
  if not submitted then
    n = n + 1
    submitted = true
    local body = string.format(
      '{"name": "load-%d-%d", "source": {"type": "file", "path": "%s"}, "pipeline": [], "sink": {"type": "null"}}',
      tid, n, source)
    -- Headers given to wrk.format replace wrk.headers: carry the key over.
    local headers = {["Content-Type"] = "application/json"}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    return wrk.format("POST", "/v1/pipelines", headers, body)
  end
  submitted = false
  return wrk.format("DELETE", string.format("/v1/pipelines/load-%d-%d", tid, n))
end
