#!lua
--[[ remove_deduplication_key: free a deduplication id now, so the next add with it creates a
job; with a job id, only while that job still holds it.

KEYS  1 dedup key
ARGV  1 job id that must hold the id, or "" for any
returns 1 when the key was deleted, 0 when there was none (or another job holds it)
events  none
]]

local holder = redis.call('GET', KEYS[1])
if not holder or (ARGV[1] ~= '' and holder ~= ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
