#!lua
--[[ extend_locks: renew the locks of all jobs one worker holds, in one call. A renewal
never shortens a lock (PEXPIRE GT), so a lock a processor extended with job.extend_lock(ms)
keeps its longer TTL.

KEYS  1 stalled
ARGV  1 job key prefix   2 lock duration ms   3.. pairs of job id, lock token
returns the ids whose lock could not be renewed (missing, or held by another token)
events  none
]]
local prefix, lock_ms = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lock_key = prefix .. id .. ':lock'
  if redis.call('GET', lock_key) == token then
    redis.call('PEXPIRE', lock_key, lock_ms, 'GT')
    redis.call('SREM', KEYS[1], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
