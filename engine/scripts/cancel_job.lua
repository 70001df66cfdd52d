#!lua
--[[ cancel_job: cancel a job on an operator's request. A job that waits (wait, paused,
prioritized, delayed) is failed at once with reason "cancelled by <who>". A running job (active,
lock held) cannot be stopped from here: the request is written into its hash together with the
lock token it is meant for, and published so its worker notices at once; the worker stops the
attempt and fails the job itself (not retried). An active job whose lock is gone has no worker
left and is failed at once. Failing here applies the job's own remove_on_fail retention.

KEYS  1 wait   2 paused   3 prioritized   4 delayed   5 active   6 failed   7 stalled
      8 counters   9 meta   10 events
ARGV  1 job key prefix   2 job id   3 who (free text)   4 pub/sub channel of cancel requests
returns {1, previous state} failed now; {2} running: its worker was asked (or had been already);
        {-1} no such job; {-3} the job is in none of the states above (finished, or waiting
        for children)
events  cancelled (by, prev); when failed here, then failed (failed_reason, attempts_made,
        prev)
]]
-- include: _common

local prefix, job_id, who = ARGV[1], ARGV[2], ARGV[3]
local job_key = prefix .. job_id
if redis.call('EXISTS', job_key) == 0 then return {-1} end

local prev = nil
if redis.call('ZSCORE', KEYS[5], job_id) then
  local token = redis.call('GET', job_key .. ':lock')
  if token then
    if redis.call('HGET', job_key, 'cancel_token') ~= token then
      redis.call('HSET', job_key, 'cancel_token', token, 'cancelled_by', who)
      emit(KEYS[10], KEYS[9], 'cancelled', 'job_id', job_id, 'by', who, 'prev', 'active')
      redis.call('PUBLISH', ARGV[4], job_id)
    end
    return {2}
  end
  redis.call('ZREM', KEYS[5], job_id)
  redis.call('SREM', KEYS[7], job_id)
  prev = 'active'
elseif redis.call('ZREM', KEYS[3], job_id) == 1 then
  prev = 'prioritized'
elseif redis.call('ZREM', KEYS[4], job_id) == 1 then
  prev = 'delayed'
elseif redis.call('LREM', KEYS[1], 0, job_id) > 0 then
  prev = 'wait'
elseif redis.call('LREM', KEYS[2], 0, job_id) > 0 then
  prev = 'paused'
else
  return {-3}
end

local now = now_ms()
local reason = 'cancelled by ' .. who
local made = tonumber(redis.call('HGET', job_key, 'attempts_made')) or 0
redis.call('HINCRBY', KEYS[8], 'failed', 1)
emit(KEYS[10], KEYS[9], 'cancelled', 'job_id', job_id, 'by', who, 'prev', prev)
emit(KEYS[10], KEYS[9], 'failed', 'job_id', job_id, 'failed_reason', reason,
     'attempts_made', made, 'prev', prev)

local keep, max_age = -1, 0
local ok, opts = pcall(cjson.decode, redis.call('HGET', job_key, 'opts') or '{}')
if ok and type(opts) == 'table' and type(opts['remove_on_fail']) == 'table' then
  keep = tonumber(opts['remove_on_fail']['count']) or -1
  max_age = tonumber(opts['remove_on_fail']['age_ms']) or 0
end
if keep == 0 then
  delete_job_keys(job_key)
else
  redis.call('HSET', job_key, 'failed_reason', reason, 'cancelled_by', who, 'finished_on', now)
  redis.call('ZADD', KEYS[6], now, job_id)
  apply_retention(KEYS[6], prefix, keep, max_age, now)
end
return {1, prev}
