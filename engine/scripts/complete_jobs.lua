#!lua
--[[ complete_jobs: record the success of several active jobs of one worker, each fenced by
its own lock token exactly as complete_job does it, and take the next ready jobs in the same
call. A busy worker sends every job that finished while its previous call was in flight in
one call (group commit), so it needs far fewer round trips than jobs. Jobs of a flow (with a
parent) go through complete_job, which takes the parent queue's keys.

KEYS  1 active   2 completed   3 stalled   4 counters   5 meta   6 events
      7 wait   8 paused   9 prioritized   10 priority sequence   11 delayed   12 marker
      13 limiter   14 breaker window
ARGV  1 job key prefix   2 jobs to take next   3 lock token base   4 lock duration ms
      5 worker id   6 rate limit: jobs per window (0 = none)   7 rate limit window ms
      8 metrics key prefix   9 metrics window ms (0 = no metrics)
      then 5 per job: job id, lock token, return value (JSON),
      keep completed (-1 all, 0 none, N the newest N), keep max age ms (0 = no limit)
returns {n, code..., next_delay_ms, rate_limit_ms, id, token, fields, ...}: n codes, one per
        job in ARGV order (0 completed, or -1/-2/-6/-3 as complete_job), then what
        move_to_active returns
events  those of complete_job for each job completed, then those of move_to_active
]]
-- include: _common
-- include: _breaker
-- include: _complete

local FIRST, PER_JOB = 10, 5
local count = (#ARGV - FIRST + 1) / PER_JOB
if count < 1 or count ~= math.floor(count) then
  return redis.error_reply('ERR complete_jobs: expected 5 arguments per job after the 9th')
end
local now = now_ms()
local k = completion_keys(KEYS)
local out = {count}
local batch = new_completions()
for i = 0, count - 1 do
  local a = FIRST + i * PER_JOB
  out[#out + 1] = complete_one(k, ARGV[1], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), ARGV[8], ARGV[9], nil, now, batch)
end
finish_completions(k, ARGV[1], batch, now)

local taken = take_jobs(tonumber(ARGV[2]), ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5], now,
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[1], KEYS[12], KEYS[5], KEYS[6],
  rate_limiter(KEYS[13], ARGV[6], ARGV[7]))
for _, v in ipairs(taken) do out[#out + 1] = v end
return out
