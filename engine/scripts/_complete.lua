-- Recording active jobs' success, pasted after _common and _breaker where a script says
-- "-- include: _complete" (complete_job for one job, complete_jobs for a batch).

-- What a call's completions write once for all of its jobs rather than once per job: the
-- completed total, the metrics (see count_metrics), the retention of the completed set, and
-- whether the queue has a circuit breaker at all (nil until read).
local function new_completions()
  return {completed = 0, metrics = {}, retention = nil, breaker = nil}
end

-- Trim the completed set to the retention of the jobs completed since the last trim.
local function trim_completed(k, prefix, batch, now)
  local r = batch.retention
  if r then
    apply_retention(k.completed, prefix, r[1], r[2], now)
    batch.retention = nil
  end
end

-- Complete the job `job_id` if `token` holds its lock and it is active. `k` holds the queue's
-- keys: active, completed, stalled, counters, meta, events, marker, breaker_window. `pk` are the
-- parent queue's keys (parent_keys) for a job of a flow, or nil. `batch` is the call's
-- new_completions(), written by finish_completions. Returns 0 when completed, else -1 no
-- such job, -2 lock missing, -6 lock held by another token, -3 job is not active.
local function complete_one(k, prefix, job_id, token, returnvalue, keep, max_age,
                            metrics_prefix, metrics_window, pk, now, batch)
  local job_key = prefix .. job_id
  local f = redis.call('HMGET', job_key, 'timestamp', 'processed_on', 'delay', 'dedup_key',
                       'attempts_made')
  -- every job hash has a timestamp; one without it (written by hand) may still exist
  if not f[1] and redis.call('EXISTS', job_key) == 0 then return -1 end
  local held = redis.call('GET', job_key .. ':lock')
  if not held then return -2 end
  if held ~= token then return -6 end
  -- a ZREM that finds nothing writes nothing: the check and the first write in one command
  if redis.call('ZREM', k.active, job_id) == 0 then return -3 end
  redis.call('SREM', k.stalled, job_id)
  redis.call('DEL', job_key .. ':lock')
  batch.completed = batch.completed + 1
  count_metrics(batch.metrics, metrics_prefix, 'completed', metrics_window, now, f[2], f[1], f[3])
  emit(k.events, k.meta, 'completed', 'job_id', job_id, 'returnvalue', returnvalue,
       'prev', 'active')
  release_dedup_key(f[4], job_id, false)
  if batch.breaker == nil then
    batch.breaker = redis.call('HEXISTS', k.meta, 'breaker') == 1
  end
  if batch.breaker then
    breaker_record(k.meta, k.breaker_window, k.events, k.marker, job_key, job_id, true, now)
  end

  settle_child(job_key, pk, 'completed', returnvalue, keep == 0, now)
  if keep == 0 then
    delete_job_keys(job_key)
  else
    redis.call('HSET', job_key, 'attempts_made', (tonumber(f[5]) or 0) + 1,
               'returnvalue', returnvalue, 'finished_on', now)
    redis.call('ZADD', k.completed, now, job_id)
    local r = batch.retention
    if r and (r[1] ~= keep or r[2] ~= max_age) then trim_completed(k, prefix, batch, now) end
    batch.retention = {keep, max_age}
  end
  return 0
end

-- Write what the call's completions gathered in `batch` (see new_completions).
local function finish_completions(k, prefix, batch, now)
  if batch.completed > 0 then
    redis.call('HINCRBY', k.counters, 'completed', batch.completed)
  end
  flush_metrics(batch.metrics)
  trim_completed(k, prefix, batch, now)
end

-- The queue keys complete_one needs, from the KEYS layout complete_job and complete_jobs share.
local function completion_keys(keys)
  return {active = keys[1], completed = keys[2], stalled = keys[3], counters = keys[4],
          meta = keys[5], events = keys[6], marker = keys[12], breaker_window = keys[14]}
end
