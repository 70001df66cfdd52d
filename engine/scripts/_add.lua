-- Creating one job as add_job does it, pasted after _common and _new_job where a script says
-- "-- include: _add" (add_job for one job, add_jobs for a batch).

-- What a call's adds read once for all of its jobs: whether the queue's meta was checked and
-- whether the queue is paused (nil until read; no other script runs meanwhile).
local function new_adds()
  return {meta = false, paused = nil}
end

-- Create the job described by `j` (custom_id, name, data, opts, delay, priority, lifo,
-- attempts) in the queue whose keys are `k` (wait, paused, prioritized, pc, delayed, marker,
-- meta, events, id) with create_job. Returns {job id, 1, state, timestamp} for a new job,
-- {job id, 0} when a job with that custom id exists already.
local function add_one(k, prefix, j, max_events, now, adds)
  if not adds.meta then
    ensure_meta(k.meta, now, max_events)
    adds.meta = true
  end
  local job_id = j.custom_id
  if job_id == '' then
    job_id = tostring(redis.call('INCR', k.id))
  elseif redis.call('EXISTS', prefix .. job_id) == 1 then
    emit(k.events, k.meta, 'duplicated', 'job_id', job_id)
    return {job_id, 0}
  end
  if adds.paused == nil then adds.paused = is_paused(k.meta) end
  j.id, j.extra = job_id, {}
  return {job_id, 1, create_job(prefix, j, k, now, adds.paused), now}
end

-- The queue keys add_one needs, from the KEYS layout add_job and add_jobs share.
local function add_keys(keys)
  return {wait = keys[1], paused = keys[2], prioritized = keys[3], pc = keys[4],
          delayed = keys[5], marker = keys[6], meta = keys[7], events = keys[8], id = keys[9]}
end
