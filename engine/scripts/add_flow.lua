#!lua
--[[ add_flow: create one or more trees of jobs (flows) at once, in one or more queues. A job
with children waits in waiting-children until they finish; the others go where add_job puts
them. Nothing is written when a call is refused.

Nodes come in pre-order (a parent before its children). A root whose custom id exists is a
duplicate: it and its whole tree are skipped (the flow was added already). Any other node whose
custom id exists refuses the whole call.

KEYS  per queue q (q = 1..Q), 10 keys from (q-1)*10+1: 1 wait   2 paused   3 prioritized
      4 priority sequence   5 delayed   6 marker   7 meta   8 events   9 id counter
      10 waiting-children
ARGV  1 max events kept in a stream (used when a queue is created)   2 Q, the number of queues
      3..Q+2 the job key prefix of each queue ("corral:{q}:job:")
      then 11 fields per node: queue index (1..Q), parent node index (0 = a root), custom id
      or "", name, data (JSON), opts (JSON), delay ms, priority, lifo (1/0), attempts,
      parent policy ("" wait, "fail", "ignore" or "remove")
returns {now ms, id, state, id, state, ...} with one pair per node: state is waiting-children,
        wait, paused, prioritized or delayed for a new job, "duplicated" for a root that
        exists and "" for the nodes of its tree; {-7, node index} when a non-root node's
        custom id exists
events  per new job in its own queue: added, then waiting-children, waiting or delayed;
        duplicated for a duplicate root
]]
-- include: _common

local NF = 11
local nq = tonumber(ARGV[2])
local first = nq + 3
local n = (#ARGV - first + 1) / NF
local function arg(i, f) return ARGV[first + (i - 1) * NF + f - 1] end
local function key(q, k) return KEYS[(q - 1) * 10 + k] end
local function prefix(q) return ARGV[2 + q] end

local now = now_ms()
local skip, has_children = {}, {}
for i = 1, n do
  local q, parent, custom = tonumber(arg(i, 1)), tonumber(arg(i, 2)), arg(i, 3)
  if parent > 0 then
    if skip[parent] then skip[i] = 'tree' end
    has_children[parent] = true
  end
  if not skip[i] and custom ~= '' and redis.call('EXISTS', prefix(q) .. custom) == 1 then
    if parent > 0 then return {-7, i} end
    skip[i] = 'root'
  end
end

for q = 1, nq do
  if redis.call('HEXISTS', key(q, 7), 'version') == 0 then
    redis.call('HSET', key(q, 7), 'version', '1', 'created', now, 'max_events', ARGV[1])
  end
end

local out, job_keys = {now}, {}
for i = 1, n do
  local q, parent, custom = tonumber(arg(i, 1)), tonumber(arg(i, 2)), arg(i, 3)
  local state, job_id = '', custom
  if skip[i] == 'root' then
    emit(key(q, 8), key(q, 7), 'duplicated', 'job_id', custom)
    state = 'duplicated'
  elseif not skip[i] then
    if job_id == '' then job_id = tostring(redis.call('INCR', key(q, 9))) end
    local job_key = prefix(q) .. job_id
    job_keys[i] = job_key
    local delay, priority = tonumber(arg(i, 7)), tonumber(arg(i, 8))
    redis.call('HSET', job_key, 'name', arg(i, 4), 'data', arg(i, 5), 'opts', arg(i, 6),
      'timestamp', now, 'delay', delay, 'priority', priority, 'attempts', arg(i, 10),
      'attempts_made', 0, 'attempts_started', 0)
    if parent > 0 then
      redis.call('HSET', job_key, 'parent', job_keys[parent])
      if arg(i, 11) ~= '' then redis.call('HSET', job_key, 'parent_policy', arg(i, 11)) end
      redis.call('SADD', job_keys[parent] .. ':dependencies', job_key)
    end
    emit(key(q, 8), key(q, 7), 'added', 'job_id', job_id, 'name', arg(i, 4))
    if has_children[i] then
      redis.call('ZADD', key(q, 10), now, job_id)
      emit(key(q, 8), key(q, 7), 'waiting-children', 'job_id', job_id)
      state = 'waiting-children'
    elseif delay > 0 then
      redis.call('ZADD', key(q, 5), now + delay, job_id)
      redis.call('ZADD', key(q, 6), now + delay, 'd')
      emit(key(q, 8), key(q, 7), 'delayed', 'job_id', job_id, 'delay', now + delay)
      state = 'delayed'
    else
      push_ready(job_id, priority, arg(i, 9) == '1', key(q, 1), key(q, 2), key(q, 3),
                 key(q, 4), key(q, 6), key(q, 7))
      emit(key(q, 8), key(q, 7), 'waiting', 'job_id', job_id)
      state = 'wait'
      if priority > 0 then state = 'prioritized' elseif is_paused(key(q, 7)) then
        state = 'paused'
      end
    end
  end
  out[#out + 1] = job_id
  out[#out + 1] = state
end
return out
