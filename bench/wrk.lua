-- The wrk side of bench/wrk.py: each wrk thread holds one keep-alive connection and POSTs, in
-- order, the JSON bodies bench/wrk.py wrote for it (bodies-<thread>.jsonl, one per line), with
-- the headers the httpx load generator sends. One connection per thread pairs every response with
-- its request, so each 202 is recorded with its send time (for accept -> arrival) and its message
-- ids. Once a thread has its last response it prints "done" and idles; bench/wrk.py stops wrk
-- (SIGINT) when every thread has, and done() writes the results for it.
--
-- With a fourth argument "keep-sending", a thread that has its share's responses sends its
-- bodies again, unrecorded, until wrk is stopped. For gunicorn's sync workers: after a
-- `Connection: close` wrk reconnects at once, and an idle connection holds a sync worker until
-- gunicorn's timeout kills it (30 s), so the threads that finish first stall the others.
--
--   wrk -t N -c N -s bench/wrk.lua URL -- DIR API_KEY PATH [keep-sending]

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now() -- unix time, as Python's time.time() (CLOCK_REALTIME is 0)
    ffi.C.clock_gettime(0, clock)
    return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

-- setup() and done() run in wrk's main Lua state, before and after the threads.
local threads = {}

function setup(thread)
    threads[#threads + 1] = thread
    thread:set("index", #threads)
end

function init(args)
    dir = args[1]
    local headers = {
        ["Authorization"] = "Bearer " .. args[2],
        ["Content-Type"] = "application/json",
        ["Accept"] = "*/*",
    }
    requests = {}
    for line in io.lines(dir .. "/bodies-" .. index .. ".jsonl") do
        requests[#requests + 1] = wrk.format("POST", args[3], headers, line)
    end
    keep_sending = args[4] == "keep-sending"
    sent, sent_at = 0, 0
    -- wrk calls the first thread's request() once before it starts, to check the request it
    -- returns (script_verify_request): that call must not use up a body.
    verifying = index == 1
    -- One string per response: status, send time, response time, the message ids (a 202's).
    results = {}
    if #requests == 0 then
        io.write("done\n")
        io.stdout:flush()
    end
end

function delay()
    -- Its share sent, the connection waits (an hour) for the bench to stop wrk.
    if sent < #requests or (keep_sending and #requests > 0) then
        return 0
    end
    return 3600000
end

function request()
    if verifying then
        verifying = false
        return requests[1]
    end
    sent = sent + 1
    sent_at = now()
    return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
    local received_at = now()
    if #results == #requests then
        return -- past its share (keep-sending): counted by wrk's summary alone
    end
    local ids = {}
    if status == 202 then
        local messages = body:match('"messages"%s*:%s*(%b[])') or ""
        for id in messages:gmatch('"id"%s*:%s*"([^"]+)"') do
            ids[#ids + 1] = id
        end
    end
    results[#results + 1] = string.format("%d\t%.6f\t%.6f\t%s", status, sent_at, received_at, table.concat(ids, ","))
    if #results == #requests then
        io.write("done\n")
        io.stdout:flush()
    end
end

function done(summary, latency, requests)
    -- init()'s globals live in the threads' states: the directory comes from the first.
    local out = assert(io.open(threads[1]:get("dir") .. "/results.tsv", "w"))
    for _, thread in ipairs(threads) do
        for _, line in ipairs(thread:get("results") or {}) do
            out:write(line, "\n")
        end
    end
    out:close()
    local e = summary.errors
    -- wrk's own figures: latency in microseconds from its histogram, socket errors.
    io.write(string.format(
        'WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
            .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
        latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
    io.stdout:flush()
end
