#!lua
--[[ schedule_next_job: after a worker took a scheduler's job, create the job of the next tick.

Only the scheduler's current job moves it on: a job taken again after a stall, a job of an
older definition, or a scheduler removed meanwhile change nothing, so each tick gets one job
however many workers there are. The client computes the next tick (croniter for cron) from
the definition it read; a definition whose timing changed since then is left alone.

KEYS  1 schedulers   2 scheduler hash   3 wait   4 paused   5 prioritized   6 priority sequence
      7 delayed   8 marker   9 meta   10 events
ARGV  1 job key prefix   2 scheduler id   3 tick job id prefix   4 id of the job just taken
      5 timing fingerprint the next tick was computed from   6 next tick ms (-1 = none)
returns {"created", job id, tick}; {"ended"} when the limit or end date is reached;
        {"stale"} when the taken job is not the scheduler's current one (nothing written);
        {"duplicated", job id, tick} when that tick's job exists already
events  added, then delayed or waiting; duplicated when the tick's job exists
]]
-- include: _common
-- include: _new_job

local prefix, sid, tick_prefix, taken = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tick = tonumber(ARGV[6])
local k = {wait = KEYS[3], paused = KEYS[4], prioritized = KEYS[5], pc = KEYS[6],
           delayed = KEYS[7], marker = KEYS[8], meta = KEYS[9], events = KEYS[10]}

local s = redis.call('HMGET', KEYS[2], 'last_job', 'timing', 'iterations', 'limit', 'end_date',
                     'name', 'data', 'opts', 'priority', 'lifo', 'attempts', 'next')
if s[1] ~= taken or s[2] ~= ARGV[5] or s[12] == '' then return {'stale'} end
local iterations = tonumber(s[3]) or 0
local limit, end_date = tonumber(s[4]) or 0, tonumber(s[5]) or 0

if tick < 0 or (limit > 0 and iterations >= limit) or (end_date > 0 and tick > end_date) then
  redis.call('HSET', KEYS[2], 'next', '')
  redis.call('ZADD', KEYS[1], '+inf', sid)
  return {'ended'}
end

local job_id = tick_prefix .. tick
if redis.call('EXISTS', prefix .. job_id) == 1 then
  emit(KEYS[10], KEYS[9], 'duplicated', 'job_id', job_id)
  redis.call('HSET', KEYS[2], 'next', tick, 'last_job', job_id)
  redis.call('ZADD', KEYS[1], tick, sid)
  return {'duplicated', job_id, tick}
end

local now = now_ms()
local delay = tick - now
if delay < 0 then delay = 0 end
create_job(prefix, {id = job_id, name = s[6], data = s[7], opts = s[8], delay = delay,
                    priority = tonumber(s[9]) or 0, lifo = s[10] == '1', attempts = s[11],
                    extra = {'scheduler', sid}}, k, now)
redis.call('HSET', KEYS[2], 'next', tick, 'last_job', job_id, 'iterations', iterations + 1)
redis.call('ZADD', KEYS[1], tick, sid)
return {'created', job_id, tick}
