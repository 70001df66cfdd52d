#!lua
--[[ remove_job_scheduler: delete a job scheduler and the job it has waiting to run. A job of
it that is running (or finished) is left alone; it will not schedule another one.

KEYS  1 schedulers   2 scheduler hash   3 wait   4 paused   5 prioritized   6 delayed
      7 meta   8 events
ARGV  1 job key prefix   2 scheduler id
returns {1, id of the waiting job removed or ""}; {0} when there is no such scheduler
events  removed (prev) for the waiting job
]]
-- include: _common
-- include: _new_job

local prefix, sid = ARGV[1], ARGV[2]
local k = {wait = KEYS[3], paused = KEYS[4], prioritized = KEYS[5], delayed = KEYS[6],
           meta = KEYS[7], events = KEYS[8]}
local existed = redis.call('ZREM', KEYS[1], sid) + redis.call('EXISTS', KEYS[2])
if existed == 0 then return {0} end
local last_job = redis.call('HGET', KEYS[2], 'last_job')
redis.call('DEL', KEYS[2])
if last_job and last_job ~= '' and redis.call('EXISTS', prefix .. last_job) == 1 then
  local state = pending_state(last_job, k)
  if state then
    remove_pending(prefix, last_job, state, k)
    return {1, last_job}
  end
end
return {1, ''}
