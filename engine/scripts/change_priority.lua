#!lua
--[[ change_priority: give a job a new priority. A ready job moves at once: from wait (or
paused) to prioritized, from prioritized to the tail of wait (priority 0), or to its new place
in prioritized (behind the jobs already at that priority). A job in any other state keeps its
place and runs with the new priority when it is next ready (promotion, retry, recovery).

KEYS  1 wait   2 paused   3 prioritized   4 priority sequence   5 marker   6 meta   7 events
ARGV  1 job key prefix   2 job id   3 priority (0 = none, 1 = runs first, at most 2^21)
returns 1; -1 no such job
events  priority-changed (priority)
]]
-- include: _common

local prefix, id, priority = ARGV[1], ARGV[2], tonumber(ARGV[3])
local job_key = prefix .. id
if redis.call('EXISTS', job_key) == 0 then return -1 end
local old = tonumber(redis.call('HGET', job_key, 'priority')) or 0
redis.call('HSET', job_key, 'priority', priority)
local move = false
if redis.call('ZSCORE', KEYS[3], id) then
  move = priority ~= old
  if move then redis.call('ZREM', KEYS[3], id) end
elseif priority > 0 then
  -- LREM is O(length of the list), as in remove_job
  move = redis.call('LREM', KEYS[1], 1, id) + redis.call('LREM', KEYS[2], 1, id) > 0
end
if move then
  push_ready(id, priority, false, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
end
emit(KEYS[7], KEYS[6], 'priority-changed', 'job_id', id, 'priority', priority)
return 1
