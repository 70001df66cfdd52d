#!lua
--[[ move_to_active: promote due delayed jobs, then take up to N ready jobs for one worker.

Each job taken leaves wait (or prioritized) for active in the same step as its lock is set,
so a job is never held only in a worker's memory. The rate limiter is checked and counted in
the same step, so it holds for all workers on all hosts.

KEYS  1 wait   2 paused   3 prioritized   4 priority sequence   5 delayed   6 active
      7 marker   8 meta   9 events   10 limiter
ARGV  1 job key prefix   2 lock token base (unique per worker)   3 lock duration ms
      4 how many jobs to take   5 worker id
      6 rate limit: jobs per window (0 = none)   7 rate limit window ms
returns {next_delay_ms, rate_limit_ms, id, token, fields, ...}: next_delay_ms is -1 when
        nothing is delayed, else ms until the earliest delayed job is due (server clock);
        rate_limit_ms is 0, or ms until the rate limiter lets jobs through; fields is HGETALL
events  waiting (prev delayed) per promoted job; active (prev wait|prioritized) per job taken
]]
-- include: _common

local now = now_ms()
return take_jobs(tonumber(ARGV[4]), ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5], now,
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  rate_limiter(KEYS[10], ARGV[6], ARGV[7]))
