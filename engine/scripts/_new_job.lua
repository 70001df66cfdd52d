-- Creating a job from a script other than add_job (a scheduler's next job, a deduplicated
-- add): pasted in by the loader where it says "-- include: _new_job", after _common. It stores
-- the job hash and places the job exactly as add_job does, with the same events.

-- Write meta on the queue's first job, as add_job does (discovery finds queues by meta).
local function ensure_meta(meta_key, now, max_events)
  if redis.call('HEXISTS', meta_key, 'version') == 0 then
    redis.call('HSET', meta_key, 'version', '1', 'created', now, 'max_events', max_events)
  end
end

-- `job` is a table with id, name, data, opts, delay (ms, relative), priority, lifo (boolean),
-- attempts, and extra: a flat list of more field/value pairs for the hash. `k` holds the queue
-- keys wait, paused, prioritized, pc, delayed, marker, meta, events.
-- `paused` is whether the queue is paused, when the caller knows it already (else nil).
-- Returns the state the job lands in: delayed, prioritized, paused or wait.
local function create_job(prefix, job, k, now, paused)
  redis.call('HSET', prefix .. job.id, 'name', job.name, 'data', job.data, 'opts', job.opts,
    'timestamp', now, 'delay', job.delay, 'priority', job.priority, 'attempts', job.attempts,
    'attempts_made', 0, 'attempts_started', 0, unpack(job.extra))
  emit(k.events, k.meta, 'added', 'job_id', job.id, 'name', job.name)
  if job.delay > 0 then
    redis.call('ZADD', k.delayed, now + job.delay, job.id)
    redis.call('ZADD', k.marker, now + job.delay, 'd')
    emit(k.events, k.meta, 'delayed', 'job_id', job.id, 'delay', now + job.delay)
    return 'delayed'
  end
  if paused == nil then paused = is_paused(k.meta) end
  push_ready(job.id, job.priority, job.lifo, k.wait, k.paused, k.prioritized, k.pc, k.marker,
             k.meta, paused)
  emit(k.events, k.meta, 'waiting', 'job_id', job.id)
  if job.priority > 0 then return 'prioritized' end
  if paused then return 'paused' end
  return 'wait'
end

-- Where a job waits to run, if it does: 'delayed', 'prioritized', 'wait' or 'paused', else nil.
-- Scans the wait and paused lists (LPOS) only when the job is in neither zset.
local function pending_state(job_id, k)
  if redis.call('ZSCORE', k.delayed, job_id) then return 'delayed' end
  if redis.call('ZSCORE', k.prioritized, job_id) then return 'prioritized' end
  if redis.call('LPOS', k.wait, job_id) then return 'wait' end
  if redis.call('LPOS', k.paused, job_id) then return 'paused' end
  return nil
end

-- Take a job that waits to run out of the structure `state` names and delete its keys.
local function remove_pending(prefix, job_id, state, k)
  if state == 'delayed' then
    redis.call('ZREM', k.delayed, job_id)
  elseif state == 'prioritized' then
    redis.call('ZREM', k.prioritized, job_id)
  else
    redis.call('LREM', k[state], 0, job_id)
  end
  delete_job_keys(prefix .. job_id)
  emit(k.events, k.meta, 'removed', 'job_id', job_id, 'prev', state)
end
