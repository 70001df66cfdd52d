#!lua
--[[ complete_job: record an active job's success, fenced by its lock token, and take the
next ready jobs in the same call (so a busy worker needs one round trip per job).
complete_jobs does the same for several jobs at once.

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
-- include: _complete

local now = now_ms()
local k, batch = completion_keys(KEYS), new_completions()
local code = complete_one(k, ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[13], ARGV[14], parent_keys(KEYS, 15, ARGV[15]),
  now, batch)
if code < 0 then return {code} end
finish_completions(k, ARGV[1], batch, now)

local out = take_jobs(tonumber(ARGV[7]), ARGV[1], ARGV[8], tonumber(ARGV[9]), ARGV[10], now,
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[1], KEYS[12], KEYS[5], KEYS[6],
  rate_limiter(KEYS[13], ARGV[11], ARGV[12]))
table.insert(out, 1, 0)
return out
