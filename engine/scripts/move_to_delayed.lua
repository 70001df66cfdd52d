#!lua
--[[ move_to_delayed: a processor sends the active job it runs back to delayed, to run again
at a later time, without using an attempt (the processor then raises DelayedError). Fenced by
the lock token. attempts_started keeps the start, so lock tokens never repeat.

KEYS  1 active   2 stalled   3 delayed   4 marker   5 meta   6 events
ARGV  1 job key prefix   2 job id   3 lock token
      4 run at, ms since the epoch (-1: use ARGV 5)   5 delay ms from now (server clock)
returns the run-at time in ms; -1 no such job; -2 lock missing; -6 lock held by another
        token; -3 job is not active
events  delayed (delay = run-at ms, prev active)
]]
-- include: _common

local prefix, job_id = ARGV[1], ARGV[2]
local job_key = prefix .. job_id
if redis.call('EXISTS', job_key) == 0 then return -1 end
local held = redis.call('GET', job_key .. ':lock')
if not held then return -2 end
if held ~= ARGV[3] then return -6 end
if not redis.call('ZSCORE', KEYS[1], job_id) then return -3 end

local run_at = tonumber(ARGV[4])
if run_at < 0 then run_at = now_ms() + tonumber(ARGV[5]) end
redis.call('ZREM', KEYS[1], job_id)
redis.call('SREM', KEYS[2], job_id)
redis.call('DEL', job_key .. ':lock')
redis.call('ZADD', KEYS[3], run_at, job_id)
redis.call('ZADD', KEYS[4], run_at, 'd')
emit(KEYS[6], KEYS[5], 'delayed', 'job_id', job_id, 'delay', run_at, 'prev', 'active')
return run_at
