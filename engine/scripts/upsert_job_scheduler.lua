#!lua
--[[ upsert_job_scheduler: create or change a job scheduler and make sure its next job exists.

The client validates the definition and computes the first tick from the server clock (cron
needs croniter). Upserting the same definition again is a no-op while the scheduler's last job
waits or runs, so producers may upsert at every start. A changed definition replaces the job
that still waits to run; if only the job template changed, the new job keeps the pending tick.
Each tick's job id is "<tick job id prefix><tick ms>", so a tick can have only one job.

KEYS  1 schedulers   2 scheduler hash   3 wait   4 paused   5 prioritized   6 priority sequence
      7 delayed   8 marker   9 meta   10 events   11 active
ARGV  1 job key prefix   2 scheduler id   3 tick job id prefix
      4 first tick ms from the new definition (-1 = none: it ends before its first run)
      5 fingerprint of the whole definition   6 fingerprint of its timing
      7 limit (0 = none)   8 end date ms (0 = none)   9 max events (used if the queue is new)
      10 name   11 data (JSON)   12 opts (JSON)   13 priority   14 lifo (1/0)   15 attempts
      16.. more field/value pairs of the definition to store (every, pattern, tz, ...)
returns {status, last job id or "", next tick or -1}; status is created, replaced (a waiting
        job was swapped for the new one), unchanged or ended (limit or end date reached);
        {"collision", tick} when that tick's job exists and is not the scheduler's waiting
        job: the client picks the following tick and calls again (nothing was written)
events  removed (prev) for a replaced job; added, then delayed or waiting for the new job
]]
-- include: _common
-- include: _new_job

local prefix, sid, tick_prefix = ARGV[1], ARGV[2], ARGV[3]
local fp, timing = ARGV[5], ARGV[6]
local limit, end_date = tonumber(ARGV[7]), tonumber(ARGV[8])
local k = {wait = KEYS[3], paused = KEYS[4], prioritized = KEYS[5], pc = KEYS[6],
           delayed = KEYS[7], marker = KEYS[8], meta = KEYS[9], events = KEYS[10]}
local now = now_ms()

local old = redis.call('HMGET', KEYS[2], 'fingerprint', 'timing', 'next', 'last_job',
                       'iterations', 'created')
local old_fp, old_timing, old_next, last_job = old[1], old[2], old[3], old[4]
local iterations = tonumber(old[5]) or 0
local waiting, running = nil, false
if last_job and last_job ~= '' and redis.call('EXISTS', prefix .. last_job) == 1 then
  waiting = pending_state(last_job, k)
  running = redis.call('ZSCORE', KEYS[11], last_job) ~= false
end

if old_fp == fp then
  if old_next == '' then return {'ended', last_job or '', -1} end
  -- the worker that took a running last job schedules the next one itself
  if waiting or running then return {'unchanged', last_job, tonumber(old_next)} end
end

local replacing = waiting ~= nil
local tick = tonumber(ARGV[4])
if replacing and old_timing == timing and old_next and old_next ~= '' then
  tick = tonumber(old_next)
end
local job_id = tick_prefix .. tick
if tick >= 0 and redis.call('EXISTS', prefix .. job_id) == 1
    and not (replacing and job_id == last_job) then
  return {'collision', tick}
end

if replacing then
  remove_pending(prefix, last_job, waiting, k)
  iterations = iterations - 1
end
local fields = {'fingerprint', fp, 'timing', timing, 'updated', now, 'name', ARGV[10],
                'data', ARGV[11], 'opts', ARGV[12], 'priority', ARGV[13], 'lifo', ARGV[14],
                'attempts', ARGV[15]}
for i = 16, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('DEL', KEYS[2])  -- drops fields the new definition no longer has
redis.call('HSET', KEYS[2], 'created', old[6] or now, 'iterations', iterations,
           'last_job', last_job or '', unpack(fields))

if tick < 0 or (limit > 0 and iterations >= limit) or (end_date > 0 and tick > end_date) then
  if replacing then redis.call('HSET', KEYS[2], 'last_job', '') end
  redis.call('HSET', KEYS[2], 'next', '')
  redis.call('ZADD', KEYS[1], '+inf', sid)
  return {'ended', redis.call('HGET', KEYS[2], 'last_job'), -1}
end

ensure_meta(KEYS[9], now, ARGV[9])
local delay = tick - now
if delay < 0 then delay = 0 end
create_job(prefix, {id = job_id, name = ARGV[10], data = ARGV[11], opts = ARGV[12],
                    delay = delay, priority = tonumber(ARGV[13]), lifo = ARGV[14] == '1',
                    attempts = ARGV[15], extra = {'scheduler', sid}}, k, now)
redis.call('HSET', KEYS[2], 'next', tick, 'last_job', job_id, 'iterations', iterations + 1)
redis.call('ZADD', KEYS[1], tick, sid)
if replacing then return {'replaced', job_id, tick} end
return {'created', job_id, tick}
