#!lua
--[[ replay_dead_letters: put dead letters back on the queue they came from, as ready jobs
with fresh attempts, under their original ids. The caller sends one batch per origin queue.

Each dead letter still in the dead-letter queue's `failed`, whose origin_queue is the queue
named in ARGV, becomes a job of that queue again: name, data, opts, priority, attempts and
attempts_started are kept (lock tokens are never reused), attempts_made is 0, timestamp is now,
failed_reason and stacktrace are not copied; its log list is renamed back. If the origin queue
has a job with that id already, the dead letter is left where it is.

KEYS  1 dead-letter failed   2 dead-letter meta   3 dead-letter events
      4 wait   5 paused   6 prioritized   7 priority sequence   8 marker   9 meta   10 events
      (4-10 are the origin queue's)
ARGV  1 dead-letter job key prefix   2 origin job key prefix   3 origin queue name
      4 max events for the origin queue if its meta is gone   5.. dead-letter ids
returns one code per id: 1 replayed; 0 not a dead letter here (any more, or not one written
        by dead_letter_job); 2 the origin queue
        has a job with that id (left in place); 3 it belongs to another origin queue
events  in the origin queue: added (name), waiting; in the dead-letter queue: replayed
        (job_id, origin_queue, origin_id)
]]
-- include: _common

local dl_prefix, prefix, origin = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()

local out = {}
for i = 5, #ARGV do
  local dl_id = ARGV[i]
  local dl_key = dl_prefix .. dl_id
  local code = 1
  if not redis.call('ZSCORE', KEYS[1], dl_id) or redis.call('EXISTS', dl_key) == 0 then
    code = 0
  elseif redis.call('HGET', dl_key, 'origin_queue') ~= origin then
    code = 3
  else
    local f = redis.call('HMGET', dl_key, 'origin_id', 'name', 'data', 'opts', 'priority',
                         'attempts', 'attempts_started')
    local job_id = f[1]
    if not (f[1] and f[2] and f[3]) then
      code = 0  -- not written by dead_letter_job: leave it alone
    elseif redis.call('EXISTS', prefix .. job_id) == 1 then
      code = 2
    else
      local job_key = prefix .. job_id
      if redis.call('HEXISTS', KEYS[9], 'version') == 0 then
        redis.call('HSET', KEYS[9], 'version', '1', 'created', now, 'max_events', ARGV[4])
      end
      local priority = tonumber(f[5]) or 0
      redis.call('HSET', job_key, 'name', f[2], 'data', f[3], 'opts', f[4] or '{}',
        'timestamp', now, 'delay', 0, 'priority', priority, 'attempts', f[6] or 1,
        'attempts_made', 0, 'attempts_started', f[7] or 0)
      if redis.call('EXISTS', dl_key .. ':logs') == 1 then
        redis.call('RENAME', dl_key .. ':logs', job_key .. ':logs')
      end
      delete_job_keys(dl_key)
      redis.call('ZREM', KEYS[1], dl_id)
      emit(KEYS[10], KEYS[9], 'added', 'job_id', job_id, 'name', f[2])
      push_ready(job_id, priority, false, KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
      emit(KEYS[10], KEYS[9], 'waiting', 'job_id', job_id)
      emit(KEYS[3], KEYS[2], 'replayed', 'job_id', dl_id, 'origin_queue', origin,
           'origin_id', job_id)
    end
  end
  out[#out + 1] = code
end
return out
