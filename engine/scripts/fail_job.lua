#!lua
--[[ fail_job: record an active job's failed attempt, fenced by its lock token: either retry
it (now or after a backoff delay) or fail it for good; then take the next ready jobs.

The worker decides retry-or-fail (it knows the attempts left, the backoff and the error
class) and passes the delay; the script applies it atomically with the server clock.

KEYS  1 active   2 failed   3 stalled   4 counters   5 meta   6 events
      7 wait   8 paused   9 prioritized   10 priority sequence   11 delayed   12 marker
      13 limiter   14 breaker window
ARGV  1 job key prefix   2 job id   3 lock token   4 failed reason   5 stack trace (JSON list)
      6 retry delay ms: -1 = fail for good, 0 = retry now, N = retry after N ms
      7 keep failed: -1 all, 0 none, N the newest N   8 keep max age ms (0 = no limit)
      9 jobs to take next   10 lock token base   11 lock duration ms   12 worker id
      13 rate limit: jobs per window (0 = none)   14 rate limit window ms
      15 metrics key prefix   16 metrics window ms (0 = no metrics)
      17 the parent queue's job key prefix, or "" (a job of a flow: see KEYS 15-23)
KEYS 15-23, only for a job with a parent: the parent queue's waiting-children, wait, paused,
      prioritized, priority sequence, delayed, marker, meta, events
returns {0, next_delay_ms, rate_limit_ms, id, token, fields, ...} on success; {-1} no such job;
        {-2} lock missing; {-6} lock held by another token; {-3} job is not active
events  retrying (then breaker) then waiting or delayed; or failed (failed_reason, attempts_made,
        prev active) then breaker, and, on the parent's queue per the child's failure policy,
        waiting or delayed (prev waiting-children); breaker (state open) only when this failure
        trips the queue's circuit breaker
]]
-- include: _common
-- include: _breaker

local prefix, job_id, token = ARGV[1], ARGV[2], ARGV[3]
local job_key = prefix .. job_id
if redis.call('EXISTS', job_key) == 0 then return {-1} end
local held = redis.call('GET', job_key .. ':lock')
if not held then return {-2} end
if held ~= token then return {-6} end
if not redis.call('ZSCORE', KEYS[1], job_id) then return {-3} end

local now = now_ms()
local retry_delay = tonumber(ARGV[6])
redis.call('ZREM', KEYS[1], job_id)
redis.call('SREM', KEYS[3], job_id)
redis.call('DEL', job_key .. ':lock')
local made = redis.call('HINCRBY', job_key, 'attempts_made', 1)
redis.call('HSET', job_key, 'failed_reason', ARGV[4], 'stacktrace', ARGV[5])

if retry_delay >= 0 then
  emit(KEYS[6], KEYS[5], 'retrying', 'job_id', job_id, 'failed_reason', ARGV[4],
       'attempts_made', made, 'prev', 'active')
  breaker_record(KEYS[5], KEYS[14], KEYS[6], KEYS[12], job_key, job_id, false, now)
  if retry_delay > 0 then
    redis.call('ZADD', KEYS[11], now + retry_delay, job_id)
    redis.call('ZADD', KEYS[12], now + retry_delay, 'd')
    emit(KEYS[6], KEYS[5], 'delayed', 'job_id', job_id, 'delay', now + retry_delay)
  else
    local priority = tonumber(redis.call('HGET', job_key, 'priority')) or 0
    push_ready(job_id, priority, false, KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[12], KEYS[5])
    emit(KEYS[6], KEYS[5], 'waiting', 'job_id', job_id, 'prev', 'active')
  end
else
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
  release_dedup(job_key, job_id, false)
  record_metrics(ARGV[15], 'failed', ARGV[16], now, job_key)
  emit(KEYS[6], KEYS[5], 'failed', 'job_id', job_id, 'failed_reason', ARGV[4],
       'attempts_made', made, 'prev', 'active')
  breaker_record(KEYS[5], KEYS[14], KEYS[6], KEYS[12], job_key, job_id, false, now)
  local keep, max_age = tonumber(ARGV[7]), tonumber(ARGV[8])
  settle_child(job_key, parent_keys(KEYS, 15, ARGV[17]), 'failed', ARGV[4], keep == 0, now)
  if keep == 0 then
    delete_job_keys(job_key)
  else
    redis.call('HSET', job_key, 'finished_on', now)
    redis.call('ZADD', KEYS[2], now, job_id)
    apply_retention(KEYS[2], prefix, keep, max_age, now)
  end
end

local out = take_jobs(tonumber(ARGV[9]), prefix, ARGV[10], tonumber(ARGV[11]), ARGV[12], now,
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[1], KEYS[12], KEYS[5], KEYS[6],
  rate_limiter(KEYS[13], ARGV[13], ARGV[14]))
table.insert(out, 1, 0)
return out
