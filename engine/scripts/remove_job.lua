#!lua
--[[ remove_job: delete a job and its keys from whichever state it is in. An active job whose
lock is held is refused: a worker is running it.

KEYS  1 wait   2 paused   3 prioritized   4 delayed   5 active   6 completed   7 failed
      8 waiting-children   9 stalled   10 meta   11 events
ARGV  1 job key prefix   2 job id
returns {1, previous state}; {-1} no such job; {-8} the job is active and locked;
        {-10} the job belongs to a flow (it has a parent or children): remove_tree removes it
events  removed (prev <state>)
]]
-- include: _common

local prefix, id = ARGV[1], ARGV[2]
local job_key = prefix .. id
if redis.call('EXISTS', job_key) == 0 then return {-1} end
if redis.call('EXISTS', job_key .. ':lock') == 1 then return {-8} end
if redis.call('HEXISTS', job_key, 'parent') == 1 or redis.call('EXISTS', job_key ..
    ':dependencies', job_key .. ':processed', job_key .. ':ignored', job_key .. ':failed') > 0
then
  return {-10}
end

local state = 'unknown'
local zsets = {{KEYS[3], 'prioritized'}, {KEYS[4], 'delayed'}, {KEYS[5], 'active'},
               {KEYS[6], 'completed'}, {KEYS[7], 'failed'}, {KEYS[8], 'waiting-children'}}
for _, z in ipairs(zsets) do
  if redis.call('ZREM', z[1], id) == 1 then state = z[2] end
end
if redis.call('LREM', KEYS[1], 0, id) > 0 then state = 'wait' end
if redis.call('LREM', KEYS[2], 0, id) > 0 then state = 'paused' end
redis.call('SREM', KEYS[9], id)
release_dedup(job_key, id, true)
delete_job_keys(job_key)
emit(KEYS[11], KEYS[10], 'removed', 'job_id', id, 'prev', state)
return {1, state}
