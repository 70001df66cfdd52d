#!lua
--[[ rate_limit_queue: stop every worker of the queue from taking jobs for N ms (a manual rate
limit, e.g. after an API answered "429 Too Many Requests"). It replaces the limiter's current
window: the limiter holds a sentinel that no jobs-per-window limit reaches, and expires in N ms.

KEYS  1 limiter   2 meta   3 events
ARGV  1 ms
returns 1
events  rate-limited (ms)
]]
-- include: _common

redis.call('SET', KEYS[1], MANUAL_LIMIT, 'PX', ARGV[1])
emit(KEYS[3], KEYS[2], 'rate-limited', 'ms', ARGV[1])
return 1
