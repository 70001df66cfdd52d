#!lua
--[[ recover_stalled: find active jobs whose worker is gone, at most once per interval for
the whole queue (whichever worker gets there first does it).

Mark and sweep: jobs marked by the previous run that still have no lock are stalled; each goes
back to be run next (front of wait, or paused; by its priority if it has one), or fails once it
has stalled more than the allowed number of times. Then the active jobs are marked again (the
first 10,000: far more than any fleet's total concurrency); renewing a lock clears the mark. A
crashed worker's jobs are back within lock duration + 2 x interval.

KEYS  1 stalled   2 stalled-check   3 active   4 wait   5 paused   6 prioritized
      7 priority sequence   8 marker   9 failed   10 counters   11 meta   12 events
ARGV  1 job key prefix   2 max stalled count   3 interval ms
      4 metrics key prefix   5 metrics window ms (0 = no metrics)
returns {recovered ids..., "|", failed ids...}; {} when a check ran less than one interval ago
        (a child of a flow over the limit is recovered, marked to be failed when taken)
events  stalled for each job found, then waiting (recovered) or failed (over the limit)
]]
-- include: _common

local prefix, max_stalled = ARGV[1], tonumber(ARGV[2])
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX') == false then return {} end
local now = now_ms()
local recovered, failed = {}, {}

for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local job_key = prefix .. id
  if redis.call('ZSCORE', KEYS[3], id) and redis.call('EXISTS', job_key .. ':lock') == 0 then
    redis.call('ZREM', KEYS[3], id)
    if redis.call('EXISTS', job_key) == 0 then
      -- the hash is gone (removed by force); nothing to run
    else
      local count = redis.call('HINCRBY', job_key, 'stalled_count', 1)
      emit(KEYS[12], KEYS[11], 'stalled', 'job_id', id, 'prev', 'active')
      local reason = 'job stalled more than allowable limit (' .. max_stalled .. ')'
      local over = count > max_stalled
      if over and redis.call('HEXISTS', job_key, 'parent') == 1 then
        -- a child of a flow is failed by the next worker that takes it (fail_job then
        -- applies its failure policy to the parent, whose queue this script cannot reach)
        redis.call('HSET', job_key, 'deferred_failure', reason)
        over = false
      end
      if over then
        local made = redis.call('HINCRBY', job_key, 'attempts_made', 1)
        redis.call('HSET', job_key, 'failed_reason', reason, 'finished_on', now)
        redis.call('ZADD', KEYS[9], now, id)
        redis.call('HINCRBY', KEYS[10], 'failed', 1)
        release_dedup(job_key, id, false)
        record_metrics(ARGV[4], 'failed', ARGV[5], now, job_key)
        emit(KEYS[12], KEYS[11], 'failed', 'job_id', id, 'failed_reason', reason,
             'attempts_made', made, 'prev', 'active')
        failed[#failed + 1] = id
      else
        local priority = tonumber(redis.call('HGET', job_key, 'priority')) or 0
        push_ready(id, priority, true, KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[11])
        emit(KEYS[12], KEYS[11], 'waiting', 'job_id', id, 'prev', 'active')
        recovered[#recovered + 1] = id
      end
    end
  end
end
redis.call('DEL', KEYS[1])

local active = redis.call('ZRANGE', KEYS[3], 0, 9999)
for i = 1, #active, 500 do
  redis.call('SADD', KEYS[1], unpack(active, i, math.min(i + 499, #active)))
end

recovered[#recovered + 1] = '|'
for _, id in ipairs(failed) do recovered[#recovered + 1] = id end
return recovered
