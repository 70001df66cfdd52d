#!lua
--[[ add_job: create one job and put it in wait, paused, prioritized or delayed.

KEYS  1 wait   2 paused   3 prioritized   4 priority sequence   5 delayed   6 marker
      7 meta   8 events   9 id counter
ARGV  1 job key prefix ("corral:{q}:job:")
      2 custom job id, or "" to take the next number from the id counter
      3 name   4 data (JSON)   5 opts (JSON)
      6 delay ms (0 = ready now)   7 priority (0 = none, 1 = first)   8 lifo (1/0)
      9 attempts   10 max events kept in the stream (used when the queue is created)
returns {job id, 1, state, timestamp ms} when created (state: wait, paused, prioritized or
        delayed); {job id, 0} when a job with that custom id already exists
events  added (name), then waiting or delayed (delay); duplicated when the id exists
]]
-- include: _common
-- include: _new_job
-- include: _add

local job = {custom_id = ARGV[2], name = ARGV[3], data = ARGV[4], opts = ARGV[5],
             delay = tonumber(ARGV[6]), priority = tonumber(ARGV[7]), lifo = ARGV[8] == '1',
             attempts = ARGV[9]}
return add_one(add_keys(KEYS), ARGV[1], job, ARGV[10], now_ms(), new_adds())
