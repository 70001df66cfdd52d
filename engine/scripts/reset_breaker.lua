#!lua
--[[ reset_breaker: the operator closes the queue's circuit breaker now, whatever its state;
workers take jobs again at once (unless the queue is paused) and the failure window restarts.

KEYS  1 meta   2 breaker window   3 events   4 marker
ARGV  (none)
returns 1 when the breaker was open or half-open, 0 when it was closed already
events  breaker (state closed, by operator) when it was open or half-open
]]
-- include: _common
-- include: _breaker

if breaker_close(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms(), 'reset by operator',
                 'operator') then
  return 1
end
return 0
