-- Recording one active job's success, pasted after _common and _breaker where a script says
-- "-- include: _complete" (complete_job for one job, complete_jobs for a batch).

-- Complete the job `job_id` if `token` holds its lock and it is active. `k` holds the queue's
-- keys: active, completed, stalled, counters, meta, events, marker, breaker_window. `pk` are the
-- parent queue's keys (parent_keys) for a job of a flow, or nil. Returns 0 when completed, else
-- -1 no such job, -2 lock missing, -6 lock held by another token, -3 job is not active.
local function complete_one(k, prefix, job_id, token, returnvalue, keep, max_age,
                            metrics_prefix, metrics_window, pk, now)
  local job_key = prefix .. job_id
  if redis.call('EXISTS', job_key) == 0 then return -1 end
  local held = redis.call('GET', job_key .. ':lock')
  if not held then return -2 end
  if held ~= token then return -6 end
  if not redis.call('ZSCORE', k.active, job_id) then return -3 end

  redis.call('ZREM', k.active, job_id)
  redis.call('SREM', k.stalled, job_id)
  redis.call('DEL', job_key .. ':lock')
  redis.call('HINCRBY', k.counters, 'completed', 1)
  record_metrics(metrics_prefix, 'completed', metrics_window, now, job_key)
  emit(k.events, k.meta, 'completed', 'job_id', job_id, 'returnvalue', returnvalue,
       'prev', 'active')
  release_dedup(job_key, job_id, false)
  breaker_record(k.meta, k.breaker_window, k.events, k.marker, job_key, job_id, true, now)

  settle_child(job_key, pk, 'completed', returnvalue, keep == 0, now)
  if keep == 0 then
    delete_job_keys(job_key)
  else
    redis.call('HINCRBY', job_key, 'attempts_made', 1)
    redis.call('HSET', job_key, 'returnvalue', returnvalue, 'finished_on', now)
    redis.call('ZADD', k.completed, now, job_id)
    apply_retention(k.completed, prefix, keep, max_age, now)
  end
  return 0
end

-- The queue keys complete_one needs, from the KEYS layout complete_job and complete_jobs share.
local function completion_keys(keys)
  return {active = keys[1], completed = keys[2], stalled = keys[3], counters = keys[4],
          meta = keys[5], events = keys[6], marker = keys[12], breaker_window = keys[14]}
end
