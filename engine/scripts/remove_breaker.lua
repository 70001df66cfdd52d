#!lua
--[[ remove_breaker: take the circuit breaker off the queue: its settings, state and window.
If it held the queue (open or half-open), it closes first and workers are woken.

KEYS  1 meta   2 breaker window   3 events   4 marker
ARGV  (none)
returns 1 when the queue had a breaker, 0 when it had none
events  breaker (state closed, by operator) when it was open or half-open
]]
-- include: _common
-- include: _breaker

local had = redis.call('HEXISTS', KEYS[1], 'breaker') == 1
breaker_close(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms(), 'breaker removed', 'operator')
redis.call('HDEL', KEYS[1], 'breaker', 'tripped', 'breaker_at', 'breaker_probes',
           'breaker_passed', 'breaker_since', 'breaker_reason', 'breaker_trips')
if had then return 1 end
return 0
