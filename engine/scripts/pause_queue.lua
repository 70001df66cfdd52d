#!lua
--[[ pause_queue: stop workers from taking jobs. Ready jobs move from wait to paused in one
RENAME; jobs added while paused go to paused; active jobs finish normally.

KEYS  1 wait   2 paused   3 meta   4 events
ARGV  (none)
returns 1 when paused now, 0 when it was paused already
events  paused
]]
-- include: _common

if is_paused(KEYS[3]) then return 0 end
redis.call('HSET', KEYS[3], 'paused', '1')
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    -- leftovers in paused (should not happen): keep them ahead of the newer wait entries
    while redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) do end
  else
    redis.call('RENAME', KEYS[1], KEYS[2])
  end
end
emit(KEYS[4], KEYS[3], 'paused')
return 1
