#!lua
--[[ hand_back_job: a worker returns an active job it holds to the front of wait at once:
when it shuts down (instead of leaving the job to the stalled check), or when the processor
raised RateLimitError. The attempt it started is not counted in attempts_made.

KEYS  1 active   2 stalled   3 wait   4 paused   5 prioritized   6 priority sequence
      7 marker   8 meta   9 events
ARGV  1 job key prefix   2 job id   3 lock token
      4 reason (default "worker shutdown")   5 undo the start, 1 (default) or 0: a worker that
      goes on running passes 0, so attempts_started (and so its lock tokens) never repeat
returns 1 when handed back; -1 no such job; -2 lock missing; -6 lock held by another token;
        -3 job is not active
events  waiting (prev active, reason)
]]
-- include: _common

local prefix, job_id = ARGV[1], ARGV[2]
local job_key = prefix .. job_id
if redis.call('EXISTS', job_key) == 0 then return -1 end
local held = redis.call('GET', job_key .. ':lock')
if not held then return -2 end
if held ~= ARGV[3] then return -6 end
if not redis.call('ZSCORE', KEYS[1], job_id) then return -3 end
redis.call('ZREM', KEYS[1], job_id)
redis.call('SREM', KEYS[2], job_id)
redis.call('DEL', job_key .. ':lock')
if ARGV[5] ~= '0' then
  redis.call('HINCRBY', job_key, 'attempts_started', -1)
end
local priority = tonumber(redis.call('HGET', job_key, 'priority')) or 0
push_ready(job_id, priority, true, KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
emit(KEYS[9], KEYS[8], 'waiting', 'job_id', job_id, 'prev', 'active',
     'reason', ARGV[4] or 'worker shutdown')
return 1
