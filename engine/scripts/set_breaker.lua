#!lua
--[[ set_breaker: give the queue a circuit breaker, or change its settings. The state (closed,
open, half-open) is kept; the failure window is started afresh when its length changes.

KEYS  1 meta   2 breaker window
ARGV  1 settings JSON {failure_rate, min_calls, window_ms, cooldown_ms, probes}
      2 window ms (the same value as in the JSON)
returns 1 when the queue had no breaker, 0 when its settings were replaced
events  none
]]
-- include: _common

local old = redis.call('HGET', KEYS[1], 'breaker')
if old and tonumber(cjson.decode(old).window_ms) ~= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'breaker', ARGV[1])
if old then return 0 end
return 1
