-- wrk script of benchmarks/national.py: a coordinator's weighted mix of requests, or one kind alone.
--
-- load.py runs it in place of its own wrk_report.lua (harness.Target.script), so it ends with the
-- same "WRKJSON {...}" line. One wrk thread (load.py's default): the write cursor assumes it.
--
-- A coordinator of the largest region clicking through its clients, per 100 requests (the default
-- weights; MIX_WEIGHTS overrides them, e.g. "write=1" for assignment writes alone):
--   client          45  GET  /v1/clients/{id}                      open a client
--   assignments     20  GET  /v1/clients/{id}/assignments          who is named for it
--   responsibility  10  GET  /v1/clients/{id}/responsibility       who holds it today
--   as_of            5  GET  /v1/clients/{id}/responsibility?as_of= who held it on a day in its history
--   gaps            10  GET  the region's gap list, first page       what needs a worker
--   write           10  POST /v1/clients/{id}/assignments          name a worker (201; 409 if repeated)
--
-- Environment (files written by national.py):
--   LOAD_AUTH      the Authorization header (load.py sets it from --bearer-file)
--   MIX_READ_IDS   one readable client id per line (reads go round robin)
--   MIX_ASOF_IDS   "<client id>?as_of=<date>" per line
--   MIX_WRITE_IDS  "<client id> <json body>" per line: an assignment that client can take once
--   MIX_CURSOR     how many write lines earlier runs used: read at the start, written at the end,
--                  so that consecutive runs (warm-up, measured runs) never repeat a client
--   MIX_GAPS_PATH  the gap list's path and query
--   MIX_WEIGHTS    "kind=weight,..." instead of the weights above

local function lines_of(path)
  local out = {}
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then out[#out + 1] = line end
    end
  end
  return out
end

local function read_number(path)
  local f = path and path ~= "" and io.open(path, "r")
  if not f then return 0 end
  local n = tonumber(f:read("*a")) or 0
  f:close()
  return n
end

local weights = {
  {"client", 45}, {"assignments", 20}, {"responsibility", 10}, {"as_of", 5}, {"gaps", 10}, {"write", 10},
}
local override = os.getenv("MIX_WEIGHTS")
if override and override ~= "" then
  weights = {}
  for kind, weight in override:gmatch("(%w[%w_]*)=(%d+)") do
    weights[#weights + 1] = {kind, tonumber(weight)}
  end
end
local total = 0
for _, kw in ipairs(weights) do total = total + kw[2] end

local reads = lines_of(os.getenv("MIX_READ_IDS"))
local as_of = lines_of(os.getenv("MIX_ASOF_IDS"))
local writes = {}
for _, line in ipairs(lines_of(os.getenv("MIX_WRITE_IDS"))) do
  local id, body = line:match("^(%S+)%s+(.+)$")
  writes[#writes + 1] = {id, body}
end
local gaps_path = os.getenv("MIX_GAPS_PATH") or "/v1/compliance/gaps"
local cursor_file = os.getenv("MIX_CURSOR")
local auth = os.getenv("LOAD_AUTH") or ""

wrk.method = "GET"
wrk.body = nil
local get_headers = {["Authorization"] = auth}
local post_headers = {["Authorization"] = auth, ["Content-Type"] = "application/json"}

local threads = {}
function setup(thread)
  thread:set("write_offset", read_number(cursor_file))
  threads[#threads + 1] = thread
end

counter, written = 0, 0

local function pick()
  local r = math.random(total)
  for _, kw in ipairs(weights) do
    r = r - kw[2]
    if r <= 0 then return kw[1] end
  end
  return weights[#weights][1]
end

function request()
  local kind = pick()
  counter = counter + 1
  if kind == "write" then
    local w = writes[((written + (write_offset or 0)) % #writes) + 1]
    written = written + 1
    return wrk.format("POST", "/v1/clients/" .. w[1] .. "/assignments", post_headers, w[2])
  elseif kind == "gaps" then
    return wrk.format("GET", gaps_path, get_headers)
  elseif kind == "as_of" then
    return wrk.format("GET", "/v1/clients/" .. as_of[(counter % #as_of) + 1]:gsub("%?", "/responsibility?", 1), get_headers)
  end
  local id = reads[(counter % #reads) + 1]
  if kind == "assignments" then
    return wrk.format("GET", "/v1/clients/" .. id .. "/assignments", get_headers)
  elseif kind == "responsibility" then
    return wrk.format("GET", "/v1/clients/" .. id .. "/responsibility", get_headers)
  end
  return wrk.format("GET", "/v1/clients/" .. id, get_headers)
end

function done(summary, latency, requests)
  if cursor_file and cursor_file ~= "" then
    local used = read_number(cursor_file)
    for _, thread in ipairs(threads) do used = used + (thread:get("written") or 0) end
    local f = assert(io.open(cursor_file, "w"))
    f:write(tostring(used))
    f:close()
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
