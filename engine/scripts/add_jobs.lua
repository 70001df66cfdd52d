#!lua
--[[ add_jobs: create several jobs of one queue in one call, each exactly as add_job creates
it (a bulk add sends its jobs in pieces of this script instead of one call per job).

KEYS  as add_job: 1 wait   2 paused   3 prioritized   4 priority sequence   5 delayed
      6 marker   7 meta   8 events   9 id counter
ARGV  1 job key prefix   2 max events kept in the stream (used when the queue is created)
      then 8 per job: custom job id or "", name, data (JSON), opts (JSON), delay ms,
      priority, lifo (1/0), attempts
returns one add_job reply per job, in ARGV order
events  those of add_job for each job, in order
]]
-- include: _common
-- include: _new_job
-- include: _add

local FIRST, PER_JOB = 3, 8
local count = (#ARGV - FIRST + 1) / PER_JOB
if count < 1 or count ~= math.floor(count) then
  return redis.error_reply('ERR add_jobs: expected 8 arguments per job after the 2nd')
end
local k, now, adds = add_keys(KEYS), now_ms(), new_adds()
local out = {}
for i = 0, count - 1 do
  local a = FIRST + i * PER_JOB
  local job = {custom_id = ARGV[a], name = ARGV[a + 1], data = ARGV[a + 2],
               opts = ARGV[a + 3], delay = tonumber(ARGV[a + 4]),
               priority = tonumber(ARGV[a + 5]), lifo = ARGV[a + 6] == '1',
               attempts = ARGV[a + 7]}
  out[i + 1] = add_one(k, ARGV[1], job, ARGV[2], now, adds)
end
return out
