#!lua
--[[ drain_queue: one bounded batch of removing jobs that are waiting to run (wait, paused,
prioritized, and delayed when asked). Active and finished jobs are left alone. Call again until
it returns 0; the last call emits "drained".

KEYS  1 wait   2 paused   3 prioritized   4 delayed   5 meta   6 events
ARGV  1 job key prefix   2 include delayed (1/0)   3 batch size (at most 1000)
returns how many jobs were removed in this batch
events  drained, when nothing is left to remove
]]
-- include: _common

local prefix = ARGV[1]
local budget = math.min(tonumber(ARGV[3]), 1000)
local removed = 0
for _, list in ipairs({KEYS[1], KEYS[2]}) do
  while budget > 0 do
    local id = redis.call('RPOP', list)
    if not id then break end
    delete_job_keys(prefix .. id)
    removed, budget = removed + 1, budget - 1
  end
end
local zsets = {KEYS[3]}
if ARGV[2] == '1' then zsets[2] = KEYS[4] end
for _, z in ipairs(zsets) do
  if budget > 0 then
    local popped = redis.call('ZPOPMIN', z, budget)
    for i = 1, #popped, 2 do
      delete_job_keys(prefix .. popped[i])
      removed, budget = removed + 1, budget - 1
    end
  end
end
if removed == 0 then emit(KEYS[6], KEYS[5], 'drained') end
return removed
