#!lua
--[[ complete_job: record an active job's success, fenced by its lock token, and take the
next ready jobs in the same call (so a busy worker needs one round trip per job).

KEYS  1 active   2 completed   3 stalled   4 counters   5 meta   6 events
      7 wait   8 paused   9 prioritized   10 priority sequence   11 delayed   12 marker
      13 limiter   14 breaker window
ARGV  1 job key prefix   2 job id   3 lock token   4 return value (JSON)
      5 keep completed: -1 all, 0 none, N the newest N   6 keep max age ms (0 = no limit)
      7 jobs to take next   8 lock token base   9 lock duration ms   10 worker id
      11 rate limit: jobs per window (0 = none)   12 rate limit window ms
      13 metrics key prefix   14 metrics window ms (0 = no metrics)
      15 the parent queue's job key prefix, or "" (a job of a flow: see KEYS 15-23)
KEYS 15-23, only for a job with a parent: the parent queue's waiting-children, wait, paused,
      prioritized, priority sequence, delayed, marker, meta, events
returns {0, next_delay_ms, rate_limit_ms, id, token, fields, ...} like move_to_active;
        {-1} no such job; {-2} lock missing; {-6} lock held by another token;
        {-3} job is not active
events  completed (returnvalue, prev active); breaker (state open|closed) when this outcome
        trips or closes the queue's circuit breaker; on the parent's queue, waiting or delayed
        (prev waiting-children) when this was its last child; then those of move_to_active
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
redis.call('ZREM', KEYS[1], job_id)
redis.call('SREM', KEYS[3], job_id)
redis.call('DEL', job_key .. ':lock')
redis.call('HINCRBY', KEYS[4], 'completed', 1)
record_metrics(ARGV[13], 'completed', ARGV[14], now, job_key)
emit(KEYS[6], KEYS[5], 'completed', 'job_id', job_id, 'returnvalue', ARGV[4], 'prev', 'active')
release_dedup(job_key, job_id, false)
breaker_record(KEYS[5], KEYS[14], KEYS[6], KEYS[12], job_key, job_id, true, now)

local keep, max_age = tonumber(ARGV[5]), tonumber(ARGV[6])
settle_child(job_key, parent_keys(KEYS, 15, ARGV[15]), 'completed', ARGV[4], keep == 0, now)
if keep == 0 then
  delete_job_keys(job_key)
else
  redis.call('HINCRBY', job_key, 'attempts_made', 1)
  redis.call('HSET', job_key, 'returnvalue', ARGV[4], 'finished_on', now)
  redis.call('ZADD', KEYS[2], now, job_id)
  apply_retention(KEYS[2], prefix, keep, max_age, now)
end

local out = take_jobs(tonumber(ARGV[7]), prefix, ARGV[8], tonumber(ARGV[9]), ARGV[10], now,
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[1], KEYS[12], KEYS[5], KEYS[6],
  rate_limiter(KEYS[13], ARGV[11], ARGV[12]))
table.insert(out, 1, 0)
return out
