#!lua
--[[ obliterate_queue: one bounded batch of deleting a whole queue. Refused while any job is
active with a held lock unless forced. Call again until it returns 0; the last call deletes the
queue-level keys.

KEYS  1 wait   2 paused   3 prioritized   4 delayed   5 active   6 completed   7 failed
      8 waiting-children   9 stalled   10 stalled-check   11 marker   12 meta   13 events
      14 counters   15 id counter   16 priority sequence   17 workers
ARGV  1 job key prefix   2 force (1/0)   3 batch size (at most 1000)
returns jobs deleted in this batch (0 = the queue is gone); -8 when active jobs hold locks
events  none (the stream is deleted with the queue)
]]
-- include: _common

local prefix, force = ARGV[1], ARGV[2] == '1'
local budget = math.min(tonumber(ARGV[3]), 1000)
if not force then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, 999)) do
    if redis.call('EXISTS', prefix .. id .. ':lock') == 1 then return -8 end
  end
end
local removed = 0
for _, list in ipairs({KEYS[1], KEYS[2]}) do
  while budget > 0 do
    local id = redis.call('RPOP', list)
    if not id then break end
    delete_job_keys(prefix .. id)
    removed, budget = removed + 1, budget - 1
  end
end
for i = 3, 8 do
  if budget > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[i], budget)
    for j = 1, #popped, 2 do
      delete_job_keys(prefix .. popped[j])
      removed, budget = removed + 1, budget - 1
    end
  end
end
if removed == 0 then
  redis.call('DEL', KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15],
             KEYS[16], KEYS[17])
end
return removed
