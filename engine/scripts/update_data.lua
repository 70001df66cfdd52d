#!lua
--[[ update_data: replace a job's data, in whatever state it is. From a processor it is
fenced by the lock token, so a worker that lost the job cannot overwrite it.

KEYS  1 meta   2 events
ARGV  1 job key prefix   2 job id   3 data (JSON)   4 lock token ("" = not fenced)
returns 1; -1 no such job; -2 lock missing; -6 lock held by another token
events  data-updated
]]
-- include: _common

local job_key = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', job_key) == 0 then return -1 end
if ARGV[4] ~= '' then
  local held = redis.call('GET', job_key .. ':lock')
  if not held then return -2 end
  if held ~= ARGV[4] then return -6 end
end
redis.call('HSET', job_key, 'data', ARGV[3])
emit(KEYS[2], KEYS[1], 'data-updated', 'job_id', ARGV[2])
return 1
