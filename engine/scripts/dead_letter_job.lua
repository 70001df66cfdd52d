#!lua
--[[ dead_letter_job: fail an active job for good, fenced by its lock token, and move it in the
same step to a dead-letter queue (a queue of the same layout, where it waits in `failed`);
then take the next ready jobs. Used instead of fail_job's final failure when the job or its
worker names a dead-letter queue and the failure is not a cancellation.

The dead letter is a new job of the dead-letter queue (id from its counter) holding every
field of the original (name, data, opts, attempts, failed_reason, stacktrace...) plus
origin_queue and origin_id; the original's log list is renamed to the dead letter's. The
original job is gone from its queue; its queue counts it as failed (and dead_lettered).

KEYS  1 active   2 stalled   3 counters   4 meta   5 events
      6 wait   7 paused   8 prioritized   9 priority sequence   10 delayed   11 marker
      12 dead-letter failed   13 dead-letter meta   14 dead-letter events   15 dead-letter id
      16 limiter   17 breaker window
KEYS 18-26, only for a job with a parent: the parent queue's waiting-children, wait, paused,
      prioritized, priority sequence, delayed, marker, meta, events
ARGV  1 job key prefix   2 job id   3 lock token   4 failed reason   5 stack trace (JSON list)
      6 dead-letter job key prefix   7 this queue's name   8 dead-letter queue's name
      9 max events for the dead-letter queue if it is new
      10 jobs to take next   11 lock token base   12 lock duration ms   13 worker id
      14 rate limit: jobs per window (0 = none)   15 rate limit window ms
      16 metrics key prefix   17 metrics window ms (0 = no metrics)
      18 the parent queue's job key prefix, or "" (a job of a flow: see KEYS 18-26)
returns {0, dead letter id, next_delay_ms, rate_limit_ms, id, token, fields, ...}; {-1} no such
        job; {-2} lock missing; {-6} lock held by another token; {-3} job is not active
events  here: failed (failed_reason, attempts_made, prev active, dead_letter, dead_letter_id);
        in the dead-letter queue: dead_lettered (job_id, name, origin_queue, origin_id)
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
redis.call('SREM', KEYS[2], job_id)
redis.call('DEL', job_key .. ':lock')
local made = redis.call('HINCRBY', job_key, 'attempts_made', 1)
redis.call('HSET', job_key, 'failed_reason', ARGV[4], 'stacktrace', ARGV[5], 'finished_on', now)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
redis.call('HINCRBY', KEYS[3], 'dead_lettered', 1)
-- as a final fail_job: free its deduplication id, count it, tell its parent (it leaves here)
-- and the circuit breaker, all before the job's keys go
release_dedup(job_key, job_id, false)
record_metrics(ARGV[16], 'failed', ARGV[17], now, job_key)
settle_child(job_key, parent_keys(KEYS, 18, ARGV[18]), 'failed', ARGV[4], true, now)
breaker_record(KEYS[4], KEYS[17], KEYS[5], KEYS[11], job_key, job_id, false, now)

if redis.call('HEXISTS', KEYS[13], 'version') == 0 then
  redis.call('HSET', KEYS[13], 'version', '1', 'created', now, 'max_events', ARGV[9])
end
redis.call('HSET', KEYS[13], 'dead_letter', '1')
local dl_id = tostring(redis.call('INCR', KEYS[15]))
local dl_key = ARGV[6] .. dl_id
redis.call('HSET', dl_key, unpack(redis.call('HGETALL', job_key)))
redis.call('HSET', dl_key, 'origin_queue', ARGV[7], 'origin_id', job_id)
if redis.call('EXISTS', job_key .. ':logs') == 1 then
  redis.call('RENAME', job_key .. ':logs', dl_key .. ':logs')
end
delete_job_keys(job_key)
redis.call('ZADD', KEYS[12], now, dl_id)

emit(KEYS[5], KEYS[4], 'failed', 'job_id', job_id, 'failed_reason', ARGV[4],
     'attempts_made', made, 'prev', 'active', 'dead_letter', ARGV[8], 'dead_letter_id', dl_id)
emit(KEYS[14], KEYS[13], 'dead_lettered', 'job_id', dl_id,
     'name', redis.call('HGET', dl_key, 'name'), 'origin_queue', ARGV[7], 'origin_id', job_id)

local out = take_jobs(tonumber(ARGV[10]), prefix, ARGV[11], tonumber(ARGV[12]), ARGV[13], now,
  KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[1], KEYS[11], KEYS[4], KEYS[5],
  rate_limiter(KEYS[16], ARGV[14], ARGV[15]))
table.insert(out, 1, dl_id)
table.insert(out, 1, 0)
return out
