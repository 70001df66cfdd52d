#!lua
--[[ clean_jobs: one bounded batch of removing finished jobs that finished before a cut-off.
Call again until it returns fewer ids than asked for.

KEYS  1 state zset (completed or failed)   2 meta   3 events
ARGV  1 job key prefix   2 state name   3 grace ms (keep jobs that finished more recently)
      4 batch size (at most 1000)
returns the ids removed
events  cleaned (state, count) when anything was removed
]]
-- include: _common

local prefix = ARGV[1]
local cutoff = now_ms() - tonumber(ARGV[3])
local batch = math.min(tonumber(ARGV[4]), 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  delete_job_keys(prefix .. id)
  redis.call('ZREM', KEYS[1], id)
end
if #ids > 0 then
  emit(KEYS[3], KEYS[2], 'cleaned', 'state', ARGV[2], 'count', #ids)
end
return ids
