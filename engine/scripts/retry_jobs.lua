#!lua
--[[ retry_jobs: one bounded batch of "retry all": the oldest jobs of a finished state that
finished no later than a cut-off time, so jobs that fail after the operator confirmed are
not swept up. Call again until it returns 0.

KEYS  1 source zset (failed or completed)   2 wait   3 paused   4 prioritized
      5 priority sequence   6 marker   7 meta   8 events   9 waiting-children
ARGV  1 job key prefix   2 source state name   3 cut-off ms (finished at or before)
      4 batch size (at most 1000)
returns how many jobs were retried in this batch
events  waiting (prev <source state>) per job; waiting-children (prev <source state>) for a
        parent that still has pending children (it waits for them again)
]]
-- include: _common

local prefix, source = ARGV[1], ARGV[2]
local now = now_ms()
local batch = math.min(tonumber(ARGV[4]), 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local job_key = prefix .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('EXISTS', job_key) == 1 then
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
  end
end
return #ids
