-- Creating one job as add_job does it, pasted after _common where a script says
-- "-- include: _add" (add_job for one job, add_jobs for a batch).

-- What a call's adds read once for all of its jobs: whether the queue's meta exists and
-- whether the queue is paused (nil until read; no other script runs meanwhile), and whether
-- an idle worker was woken.
local function new_adds()
  return {meta = false, paused = nil, marked = false}
end

-- Create the job described by `j` (custom_id, name, data, opts, delay, priority, lifo,
-- attempts) in the queue whose keys are `k` (wait, paused, prioritized, pc, delayed, marker,
-- meta, events, id). Returns {job id, 1, state, timestamp} for a new job, {job id, 0} when a
-- job with that custom id exists already.
local function add_one(k, prefix, j, max_events, now, adds)
  if not adds.meta then
    if redis.call('HEXISTS', k.meta, 'version') == 0 then
      redis.call('HSET', k.meta, 'version', '1', 'created', now, 'max_events', max_events)
    end
    adds.meta = true
  end

  local job_id = j.custom_id
  if job_id == '' then
    job_id = tostring(redis.call('INCR', k.id))
  elseif redis.call('EXISTS', prefix .. job_id) == 1 then
    emit(k.events, k.meta, 'duplicated', 'job_id', job_id)
    return {job_id, 0}
  end

  local job_key = prefix .. job_id
  redis.call('HSET', job_key, 'name', j.name, 'data', j.data, 'opts', j.opts,
    'timestamp', now, 'delay', j.delay, 'priority', j.priority, 'attempts', j.attempts,
    'attempts_made', 0, 'attempts_started', 0)
  emit(k.events, k.meta, 'added', 'job_id', job_id, 'name', j.name)

  if j.delay > 0 then
    redis.call('ZADD', k.delayed, now + j.delay, job_id)
    redis.call('ZADD', k.marker, now + j.delay, 'd')
    emit(k.events, k.meta, 'delayed', 'job_id', job_id, 'delay', now + j.delay)
    return {job_id, 1, 'delayed', now}
  end
  if adds.paused == nil then adds.paused = is_paused(k.meta) end
  if j.priority > 0 then
    local seq = redis.call('INCR', k.pc) % 4294967296
    redis.call('ZADD', k.prioritized, j.priority * 4294967296 + seq, job_id)
  else
    local target = k.wait
    if adds.paused then target = k.paused end
    if j.lifo then
      redis.call('RPUSH', target, job_id)
    else
      redis.call('LPUSH', target, job_id)
    end
  end
  if not adds.paused and not adds.marked then
    redis.call('ZADD', k.marker, 0, '0')  -- wakes one idle worker; once per call is enough
    adds.marked = true
  end
  emit(k.events, k.meta, 'waiting', 'job_id', job_id)
  if j.priority > 0 then return {job_id, 1, 'prioritized', now} end
  if adds.paused then return {job_id, 1, 'paused', now} end
  return {job_id, 1, 'wait', now}
end

-- The queue keys add_one needs, from the KEYS layout add_job and add_jobs share.
local function add_keys(keys)
  return {wait = keys[1], paused = keys[2], prioritized = keys[3], pc = keys[4],
          delayed = keys[5], marker = keys[6], meta = keys[7], events = keys[8], id = keys[9]}
end
