#!lua
--[[ resume_queue: let workers take jobs again; paused jobs go back to wait in one RENAME and
idle workers are woken.

KEYS  1 wait   2 paused   3 meta   4 events   5 marker
ARGV  (none)
returns 1 when resumed now, 0 when it was not paused
events  resumed
]]
-- include: _common

if not is_paused(KEYS[3]) then return 0 end
redis.call('HDEL', KEYS[3], 'paused')
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    while redis.call('RPOPLPUSH', KEYS[2], KEYS[1]) do end
  else
    redis.call('RENAME', KEYS[2], KEYS[1])
  end
end
redis.call('ZADD', KEYS[5], 0, '0')
emit(KEYS[4], KEYS[3], 'resumed')
return 1
