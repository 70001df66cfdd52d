#!lua
--[[ retry_job: send finished jobs (failed, or completed) back to be run again with fresh
attempts, but only those still in the state the caller saw. attempts_started is kept, so every
later run gets a lock token never used before.

KEYS  1 source zset (failed or completed)   2 wait   3 paused   4 prioritized
      5 priority sequence   6 marker   7 meta   8 events   9 waiting-children
ARGV  1 job key prefix   2 source state name ("failed" or "completed")   3.. job ids
returns for each id in order: 1 retried, 0 not in the source state (or gone)
events  waiting (prev <source state>) per job; waiting-children (prev <source state>) for a
        parent that still has pending children (it waits for them again) retried
]]
-- include: _common

local prefix, source = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local job_key = prefix .. id
  if redis.call('ZREM', KEYS[1], id) == 1 and redis.call('EXISTS', job_key) == 1 then
    redis.call('HSET', job_key, 'attempts_made', 0, 'stalled_count', 0)
    redis.call('HDEL', job_key, 'finished_on', 'processed_on', 'failed_reason', 'returnvalue',
               'stacktrace', 'progress')
    if requeue_flow_job(job_key, id, source, KEYS[9], now) then
      emit(KEYS[8], KEYS[7], 'waiting-children', 'job_id', id, 'prev', source)
    else
      local priority = tonumber(redis.call('HGET', job_key, 'priority')) or 0
      push_ready(id, priority, false, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
      emit(KEYS[8], KEYS[7], 'waiting', 'job_id', id, 'prev', source)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
