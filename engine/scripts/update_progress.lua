#!lua
--[[ update_progress: store an active job's progress, fenced by its lock token.

KEYS  1 meta   2 events
ARGV  1 job key prefix   2 job id   3 lock token   4 progress (JSON)
returns 1; -1 no such job; -2 lock missing; -6 lock held by another token
events  progress (progress)
]]
-- include: _common

local job_key = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', job_key) == 0 then return -1 end
local held = redis.call('GET', job_key .. ':lock')
if not held then return -2 end
if held ~= ARGV[3] then return -6 end
redis.call('HSET', job_key, 'progress', ARGV[4])
emit(KEYS[2], KEYS[1], 'progress', 'job_id', ARGV[2], 'progress', ARGV[4])
return 1
