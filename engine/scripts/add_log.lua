#!lua
--[[ add_log: append one line to an active job's log, fenced by its lock token, keeping only
the newest lines. A worker that lost its lock cannot recreate the log of a removed job.

KEYS  1 meta (unused; names the queue's slot)
ARGV  1 job key prefix   2 job id   3 lock token   4 line   5 lines kept
returns 1; -1 no such job; -2 lock missing; -6 lock held by another token
events  none
]]
local job_key = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', job_key) == 0 then return -1 end
local held = redis.call('GET', job_key .. ':lock')
if not held then return -2 end
if held ~= ARGV[3] then return -6 end
redis.call('RPUSH', job_key .. ':logs', ARGV[4])
redis.call('LTRIM', job_key .. ':logs', -tonumber(ARGV[5]), -1)
return 1
