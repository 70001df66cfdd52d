#!lua
--[[ remove_tree: remove a job of a flow with all its descendants (children in any queue,
their children, ...), and detach it from its parent: a parent left with no pending child
moves on. Refused, with nothing removed, while any job of the subtree is held by a worker.

KEYS  per queue q (q = 1..Q), 13 keys from (q-1)*13+1: 1 wait   2 paused   3 prioritized
      4 delayed   5 active   6 completed   7 failed   8 waiting-children   9 stalled
      10 meta   11 events   12 priority sequence   13 marker
      (every queue of the subtree, and the parent's queue)
ARGV  1 Q   2..Q+1 the job key prefix of each queue   Q+2 the job's key
      Q+3 the most jobs to remove in one call
returns {1, previous state of the job, jobs removed}; {-1} no such job;
        {-8, job key} that job is held by a worker; {-11, job key} that job's queue was not
        passed (read the tree again); {-12, count} the subtree has more jobs than allowed
events  removed (prev <state>) for each job, in its queue; on the parent's queue waiting or
        delayed (prev waiting-children) when its last pending child was removed
]]
-- include: _common

local nq = tonumber(ARGV[1])
local root, limit = ARGV[nq + 2], tonumber(ARGV[nq + 3])
local by_prefix = {}
for q = 1, nq do by_prefix[ARGV[1 + q]] = q end
local function key(q, k) return KEYS[(q - 1) * 13 + k] end
local function locate(job_key)
  local prefix, id = string.match(job_key, '^(.*:job:)([^:]+)$')
  return by_prefix[prefix or ''], id
end

if redis.call('EXISTS', root) == 0 then return {-1} end
local nodes, seen, i = {root}, {[root] = true}, 1
while i <= #nodes do
  local job_key = nodes[i]
  if not locate(job_key) then return {-11, job_key} end
  if redis.call('EXISTS', job_key .. ':lock') == 1 then return {-8, job_key} end
  local children = redis.call('SMEMBERS', job_key .. ':dependencies')
  for _, k in ipairs(redis.call('HKEYS', job_key .. ':processed')) do children[#children + 1] = k end
  for _, k in ipairs(redis.call('HKEYS', job_key .. ':ignored')) do children[#children + 1] = k end
  for _, k in ipairs(redis.call('ZRANGE', job_key .. ':failed', 0, -1)) do
    children[#children + 1] = k
  end
  for _, child in ipairs(children) do
    if not seen[child] and redis.call('HGET', child, 'parent') == job_key then
      seen[child] = true
      nodes[#nodes + 1] = child
      if #nodes > limit then return {-12, #nodes} end
    end
  end
  i = i + 1
end
local parent_key = redis.call('HGET', root, 'parent')
local pq, parent_id
if parent_key and redis.call('EXISTS', parent_key) == 1 then
  pq, parent_id = locate(parent_key)
  if not pq then return {-11, parent_key} end
end

local root_state = 'unknown'
for _, job_key in ipairs(nodes) do
  local q, id = locate(job_key)
  local state = 'unknown'
  local zsets = {{3, 'prioritized'}, {4, 'delayed'}, {5, 'active'}, {6, 'completed'},
                 {7, 'failed'}, {8, 'waiting-children'}}
  for _, z in ipairs(zsets) do
    if redis.call('ZREM', key(q, z[1]), id) == 1 then
      state = z[2]
      break
    end
  end
  if state == 'unknown' then  -- a list scan only for jobs in no sorted set
    if redis.call('LREM', key(q, 1), 0, id) > 0 then state = 'wait'
    elseif redis.call('LREM', key(q, 2), 0, id) > 0 then state = 'paused' end
  end
  redis.call('SREM', key(q, 9), id)
  delete_job_keys(job_key)
  emit(key(q, 11), key(q, 10), 'removed', 'job_id', id, 'prev', state)
  if job_key == root then root_state = state end
end

if pq and redis.call('SREM', parent_key .. ':dependencies', root) == 1
   and redis.call('SCARD', parent_key .. ':dependencies') == 0 then
  local pk = {prefix = ARGV[1 + pq], waiting_children = key(pq, 8), wait = key(pq, 1),
              paused = key(pq, 2), prioritized = key(pq, 3), pc = key(pq, 12),
              delayed = key(pq, 4), marker = key(pq, 13), meta = key(pq, 10),
              events = key(pq, 11)}
  release_parent(pk, parent_id, now_ms())
end
return {1, root_state, #nodes}
