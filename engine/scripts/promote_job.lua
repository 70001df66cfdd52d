#!lua
--[[ promote_job: make delayed jobs ready now, but only those still delayed.

KEYS  1 delayed   2 wait   3 paused   4 prioritized   5 priority sequence   6 marker
      7 meta   8 events
ARGV  1 job key prefix   2.. job ids; or, when ARGV[2] is "*", ARGV[3] = batch size: the
      earliest delayed jobs (at most 1000)
returns for each id: 1 promoted, 0 not delayed; with "*": {count promoted}
events  promoted, then waiting (prev delayed) per job
]]
-- include: _common

local prefix = ARGV[1]
local ids, batch_mode = {}, ARGV[2] == '*'
if batch_mode then
  ids = redis.call('ZRANGE', KEYS[1], 0, math.min(tonumber(ARGV[3]), 1000) - 1)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out, promoted = {}, 0
for _, id in ipairs(ids) do
  local job_key = prefix .. id
  if redis.call('ZREM', KEYS[1], id) == 1 and redis.call('EXISTS', job_key) == 1 then
    redis.call('HSET', job_key, 'delay', 0)
    local priority = tonumber(redis.call('HGET', job_key, 'priority')) or 0
    push_ready(id, priority, false, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
    emit(KEYS[8], KEYS[7], 'promoted', 'job_id', id)
    emit(KEYS[8], KEYS[7], 'waiting', 'job_id', id, 'prev', 'delayed')
    out[#out + 1] = 1
    promoted = promoted + 1
  else
    out[#out + 1] = 0
  end
end
if batch_mode then return {promoted} end
return out
