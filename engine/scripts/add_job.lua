#!lua
--[[ add_job: create one job and put it in wait, paused, prioritized or delayed.

KEYS  1 wait   2 paused   3 prioritized   4 priority sequence   5 delayed   6 marker
      7 meta   8 events   9 id counter
ARGV  1 job key prefix ("corral:{q}:job:")
      2 custom job id, or "" to take the next number from the id counter
      3 name   4 data (JSON)   5 opts (JSON)
      6 delay ms (0 = ready now)   7 priority (0 = none, 1 = first)   8 lifo (1/0)
      9 attempts   10 max events kept in the stream (used when the queue is created)
returns {job id, 1, state, timestamp ms} when created (state: wait, paused, prioritized or
        delayed); {job id, 0} when a job with that custom id already exists
events  added (name), then waiting or delayed (delay); duplicated when the id exists
]]
-- include: _common

local prefix, custom_id = ARGV[1], ARGV[2]
local delay, priority = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()

if redis.call('HEXISTS', KEYS[7], 'version') == 0 then
  redis.call('HSET', KEYS[7], 'version', '1', 'created', now, 'max_events', ARGV[10])
end

local job_id = custom_id
if job_id == '' then
  job_id = tostring(redis.call('INCR', KEYS[9]))
elseif redis.call('EXISTS', prefix .. job_id) == 1 then
  emit(KEYS[8], KEYS[7], 'duplicated', 'job_id', job_id)
  return {job_id, 0}
end

local job_key = prefix .. job_id
redis.call('HSET', job_key, 'name', ARGV[3], 'data', ARGV[4], 'opts', ARGV[5],
  'timestamp', now, 'delay', delay, 'priority', priority, 'attempts', ARGV[9],
  'attempts_made', 0, 'attempts_started', 0)
emit(KEYS[8], KEYS[7], 'added', 'job_id', job_id, 'name', ARGV[3])

if delay > 0 then
  redis.call('ZADD', KEYS[5], now + delay, job_id)
  redis.call('ZADD', KEYS[6], now + delay, 'd')
  emit(KEYS[8], KEYS[7], 'delayed', 'job_id', job_id, 'delay', now + delay)
  return {job_id, 1, 'delayed', now}
end
push_ready(job_id, priority, ARGV[8] == '1', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6],
           KEYS[7])
emit(KEYS[8], KEYS[7], 'waiting', 'job_id', job_id)
if priority > 0 then return {job_id, 1, 'prioritized', now} end
if is_paused(KEYS[7]) then return {job_id, 1, 'paused', now} end
return {job_id, 1, 'wait', now}
