#!lua
--[[ add_deduplicated_job: add_job for a job with a deduplication id. While another job holds
the id, the add returns that job instead (or, in replace mode, swaps a holder that is still
delayed for the new job). Checked and written in one step, so concurrent adds with one id make
one job.

The id is held by the key's value (a job id), with a PX TTL when a ttl is given. A key without
a TTL whose job no longer exists is stale (its job finished or was deleted) and is taken over.

KEYS  1 wait   2 paused   3 prioritized   4 priority sequence   5 delayed   6 marker
      7 meta   8 events   9 id counter   10 dedup key
ARGV  1 job key prefix   2 custom job id or ""   3 name   4 data (JSON)   5 opts (JSON)
      6 delay ms   7 priority   8 lifo (1/0)   9 attempts   10 max events
      11 deduplication id   12 ttl ms (0 = held until the job finishes)   13 extend (1/0)
      14 replace (1/0)
returns {job id, 1, state, timestamp} created; {job id, 0} the custom id exists already;
        {holder id, 2} deduplicated (no job created, no id consumed);
        {job id, 3, state, timestamp, replaced id} created in place of a delayed holder
events  created: added, then delayed or waiting; deduplicated (job_id = the holder,
        deduplication_id, and deduplicated_job_id = the custom id that was refused, if any);
        replaced: removed (prev delayed), added, delayed|waiting, then deduplicated (job_id =
        the new job, deduplicated_job_id = the replaced one); duplicated for an existing id
]]
-- include: _common
-- include: _new_job

local prefix, custom_id, dedup_key = ARGV[1], ARGV[2], KEYS[10]
local ttl, extend, replace = tonumber(ARGV[12]), ARGV[13] == '1', ARGV[14] == '1'
local k = {wait = KEYS[1], paused = KEYS[2], prioritized = KEYS[3], pc = KEYS[4],
           delayed = KEYS[5], marker = KEYS[6], meta = KEYS[7], events = KEYS[8]}
local now = now_ms()
ensure_meta(KEYS[7], now, ARGV[10])

local holder = redis.call('GET', dedup_key)
if holder and redis.call('PTTL', dedup_key) == -1
    and redis.call('EXISTS', prefix .. holder) == 0 then
  holder = false
end
local replacing = false
if holder and replace and redis.call('ZSCORE', KEYS[5], holder) then replacing = true end

if custom_id ~= '' and redis.call('EXISTS', prefix .. custom_id) == 1
    and not (replacing and custom_id == holder) then
  emit(KEYS[8], KEYS[7], 'duplicated', 'job_id', custom_id)
  return {custom_id, 0}
end

if holder and not replacing then
  if extend and ttl > 0 then redis.call('PEXPIRE', dedup_key, ttl) end
  if custom_id ~= '' then
    emit(KEYS[8], KEYS[7], 'deduplicated', 'job_id', holder, 'deduplication_id', ARGV[11],
         'deduplicated_job_id', custom_id)
  else
    emit(KEYS[8], KEYS[7], 'deduplicated', 'job_id', holder, 'deduplication_id', ARGV[11])
  end
  return {holder, 2}
end

if replacing then remove_pending(prefix, holder, 'delayed', k) end
local job_id = custom_id
if job_id == '' then job_id = tostring(redis.call('INCR', KEYS[9])) end
local state = create_job(prefix, {id = job_id, name = ARGV[3], data = ARGV[4], opts = ARGV[5],
                                  delay = tonumber(ARGV[6]), priority = tonumber(ARGV[7]),
                                  lifo = ARGV[8] == '1', attempts = ARGV[9],
                                  extra = {'dedup_key', dedup_key}}, k, now)
if replacing then
  if extend and ttl > 0 then
    redis.call('SET', dedup_key, job_id, 'PX', ttl)
  else
    redis.call('SET', dedup_key, job_id, 'KEEPTTL')
  end
  emit(KEYS[8], KEYS[7], 'deduplicated', 'job_id', job_id, 'deduplication_id', ARGV[11],
       'deduplicated_job_id', holder)
  return {job_id, 3, state, now, holder}
end
if ttl > 0 then
  redis.call('SET', dedup_key, job_id, 'PX', ttl)
else
  redis.call('SET', dedup_key, job_id)
end
return {job_id, 1, state, now}
