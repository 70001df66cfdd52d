-- Shared helpers, pasted into a script by the loader where it says "-- include: _common".
-- Every helper takes the key names it touches as arguments, so each script still declares
-- all of its queue-level keys in KEYS.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Each queue's events cap, read once per script call: a transition of a batch of jobs emits
-- several events. Only a cap that is set is kept, so a script that writes a new queue's meta
-- after an emit still sees the cap it wrote.
local events_cap = {}

-- Append one event to the queue's capped stream. `...` are field/value pairs after `event`.
local function emit(events_key, meta_key, event, ...)
  local max_events = events_cap[meta_key]
  if not max_events then
    max_events = tonumber(redis.call('HGET', meta_key, 'max_events'))
    events_cap[meta_key] = max_events
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', max_events or 10000, '*', 'event', event, ...)
end

local function is_paused(meta_key)
  return redis.call('HEXISTS', meta_key, 'paused') == 1
end

-- Put a job where workers take ready jobs from: the prioritized zset when it has a priority,
-- else the wait list (or the paused list while the queue is paused). Wakes one idle worker.
-- `paused` is whether the queue is paused, when the caller knows it already (else nil).
local function push_ready(job_id, priority, lifo, wait_key, paused_key, prioritized_key,
                          pc_key, marker_key, meta_key, paused)
  if paused == nil then paused = is_paused(meta_key) end
  if priority > 0 then
    local seq = redis.call('INCR', pc_key) % 4294967296
    redis.call('ZADD', prioritized_key, priority * 4294967296 + seq, job_id)
  else
    local target = wait_key
    if paused then target = paused_key end
    if lifo then
      redis.call('RPUSH', target, job_id)
    else
      redis.call('LPUSH', target, job_id)
    end
  end
  if not paused then
    redis.call('ZADD', marker_key, 0, '0')
  end
end

local function delete_job_keys(job_key)
  redis.call('DEL', job_key, job_key .. ':lock', job_key .. ':logs', job_key .. ':dependencies',
             job_key .. ':processed', job_key .. ':ignored', job_key .. ':failed')
end

-- Flows. The keys of a job's parent's queue, passed by the caller as 9 KEYS from `first`
-- (waiting-children, wait, paused, prioritized, priority sequence, delayed, marker, meta,
-- events) and the parent queue's job key prefix in ARGV; nil when they were not passed.
local function parent_keys(keys, first, prefix)
  if not prefix or prefix == '' or #keys < first + 8 then return nil end
  return {prefix = prefix, waiting_children = keys[first], wait = keys[first + 1],
          paused = keys[first + 2], prioritized = keys[first + 3], pc = keys[first + 4],
          delayed = keys[first + 5], marker = keys[first + 6], meta = keys[first + 7],
          events = keys[first + 8]}
end

-- A parent whose children are done leaves waiting-children: to delayed if it has a delay
-- (unless it is doomed by a failed child), else to the front of wait, or by its priority.
local function release_parent(pk, parent_id, now)
  if redis.call('ZREM', pk.waiting_children, parent_id) == 0 then return end
  local parent_key = pk.prefix .. parent_id
  local f = redis.call('HMGET', parent_key, 'delay', 'priority', 'deferred_failure')
  local delay, priority = tonumber(f[1]) or 0, tonumber(f[2]) or 0
  if delay > 0 and not f[3] then
    redis.call('ZADD', pk.delayed, now + delay, parent_id)
    redis.call('ZADD', pk.marker, now + delay, 'd')
    emit(pk.events, pk.meta, 'delayed', 'job_id', parent_id, 'delay', now + delay,
         'prev', 'waiting-children')
  else
    push_ready(parent_id, priority, true, pk.wait, pk.paused, pk.prioritized, pk.pc,
               pk.marker, pk.meta)
    emit(pk.events, pk.meta, 'waiting', 'job_id', parent_id, 'prev', 'waiting-children')
  end
end

-- A child finished for good: book it on its parent (pk from parent_keys; nothing happens
-- for a job without a parent). `outcome` is 'completed' (value = return value) or 'failed'
-- (value = failed reason); `deleted` says the child is deleted right after (retention 0).
-- Failure policies: 'fail' dooms the parent (released to be failed by the next worker),
-- 'ignore' records the reason and lets the parent run, 'remove' forgets the child; without
-- one the parent keeps waiting, unless the child is being deleted.
local function settle_child(job_key, pk, outcome, value, deleted, now)
  if pk == nil then return end
  local f = redis.call('HMGET', job_key, 'parent', 'parent_policy')
  local parent_key, policy = f[1], f[2]
  if not parent_key or string.sub(parent_key, 1, #pk.prefix) ~= pk.prefix then return end
  local parent_id = string.sub(parent_key, #pk.prefix + 1)
  local deps = parent_key .. ':dependencies'
  if outcome == 'failed' and not policy and not deleted then return end
  if redis.call('SREM', deps, job_key) == 0 then return end
  if outcome == 'completed' then
    redis.call('HSET', parent_key .. ':processed', job_key, value)
  elseif policy == 'fail' then
    redis.call('ZADD', parent_key .. ':failed', now, job_key)
    if redis.call('ZSCORE', pk.waiting_children, parent_id) then
      redis.call('HSET', parent_key, 'deferred_failure',
                 'child ' .. job_key .. ' failed: ' .. value)
      release_parent(pk, parent_id, now)
    end
    return
  elseif policy == 'ignore' then
    redis.call('HSET', parent_key .. ':ignored', job_key, value)
  end
  if redis.call('SCARD', deps) == 0 then release_parent(pk, parent_id, now) end
end

-- Free the deduplication id a job holds (its hash field `dedup_key` names the key), if the key
-- still holds this job: always when the job is removed; when it finishes, only if the key has
-- no TTL (a TTL keeps throttling until it runs out). Call before the job hash is deleted.
local function release_dedup_key(dedup_key, job_id, removing)
  if dedup_key and redis.call('GET', dedup_key) == job_id
      and (removing or redis.call('PTTL', dedup_key) == -1) then
    redis.call('DEL', dedup_key)
  end
end

-- release_dedup_key with the job's `dedup_key` field read here.
local function release_dedup(job_key, job_id, removing)
  release_dedup_key(redis.call('HGET', job_key, 'dedup_key'), job_id, removing)
end

-- Keep a finished-jobs zset within its retention: at most `keep` members (-1 = no limit) and
-- none older than `max_age` ms (0 = no limit). Removes at most 1000 jobs per call, so the cost
-- of a transition stays bounded; the next transition removes the rest.
local function apply_retention(set_key, job_prefix, keep, max_age, now)
  local budget = 1000
  if max_age > 0 then
    local old = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - max_age, 'LIMIT', 0, budget)
    for _, id in ipairs(old) do
      delete_job_keys(job_prefix .. id)
      redis.call('ZREM', set_key, id)
    end
    budget = budget - #old
  end
  if keep >= 0 and budget > 0 then
    local excess = redis.call('ZCARD', set_key) - keep
    if excess > 0 then
      if excess > budget then excess = budget end
      local ids = redis.call('ZRANGE', set_key, 0, excess - 1)
      for _, id in ipairs(ids) do
        delete_job_keys(job_prefix .. id)
      end
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
end

-- The ids of a ZRANGEBYSCORE ... WITHSCORES reply in the order the jobs fell due, and those
-- due in the same ms in the order they were added: by number for ids from the id counter
-- (the zset alone orders equal scores as strings, so "10" would run before "9"), numbered ids
-- before custom ones, and custom ids (whose order of adding is not kept) as strings.
local function in_due_order(reply)
  local due = {}
  for i = 1, #reply, 2 do
    due[#due + 1] = {reply[i], tonumber(reply[i + 1]), tonumber(reply[i])}
  end
  table.sort(due, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    if a[3] and b[3] and a[3] ~= b[3] then return a[3] < b[3] end
    if (a[3] == nil) ~= (b[3] == nil) then return a[3] ~= nil end
    return a[1] < b[1]
  end)
  local ids = {}
  for i, job in ipairs(due) do ids[i] = job[1] end
  return ids
end

-- Move delayed jobs whose time has come to the ready structures (at most 1000 per call), in
-- the order they fell due (see in_due_order).
local function promote_due(delayed_key, job_prefix, now, wait_key, paused_key,
                           prioritized_key, pc_key, marker_key, meta_key, events_key)
  local due = in_due_order(redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now,
                                      'WITHSCORES', 'LIMIT', 0, 1000))
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed_key, id)
    local priority = tonumber(redis.call('HGET', job_prefix .. id, 'priority')) or 0
    push_ready(id, priority, false, wait_key, paused_key, prioritized_key, pc_key,
               marker_key, meta_key)
    emit(events_key, meta_key, 'waiting', 'job_id', id, 'prev', 'delayed')
  end
end

-- Rate limiting (fixed windows). The limiter key counts the jobs taken in the current window
-- and is created with a TTL of the window's length, so the window ends when the key expires.
-- A manual rate limit sets it to MANUAL_LIMIT for N ms, which stops every worker.
local MANUAL_LIMIT = 9007199254740991

-- The limiter take_jobs checks: its key, jobs per window (0 = no limit of this worker's own;
-- a manual limit still applies) and the window in ms.
local function rate_limiter(key, max, duration)
  return {key = key, max = tonumber(max) or 0, duration = tonumber(duration) or 0}
end

-- How many of `wanted` jobs the limiter lets through now, and the ms until its window ends
-- when it lets none through (else 0).
local function limiter_room(limiter, wanted)
  if not limiter then return wanted, 0 end
  local current = tonumber(redis.call('GET', limiter.key)) or 0
  if current >= MANUAL_LIMIT or (limiter.max > 0 and current >= limiter.max) then
    local ttl = redis.call('PTTL', limiter.key)
    if ttl > 0 then return 0, ttl end
    redis.call('DEL', limiter.key)  -- no TTL left: never let it block the queue for ever
    current = 0
  end
  if limiter.max > 0 and limiter.max - current < wanted then
    return limiter.max - current, 0
  end
  return wanted, 0
end

-- Count `taken` jobs in the limiter's window, starting a window if none is running.
local function count_taken(limiter, taken)
  if not limiter or limiter.max <= 0 or taken == 0 then return end
  redis.call('INCRBY', limiter.key, taken)
  if redis.call('PTTL', limiter.key) < 0 then
    redis.call('PEXPIRE', limiter.key, limiter.duration)
  end
end

-- Circuit breaker gate (protocol §25): nil while no breaker holds the queue; else
-- {jobs that may be taken, probe mark, ms until the gate changes}. When its time has come, an
-- open breaker (or a half-open round of probes that got no verdict) starts a round of probes.
local function breaker_gate(meta_key, events_key, now)
  local g = redis.call('HMGET', meta_key, 'tripped', 'breaker_at', 'breaker_probes', 'breaker')
  if not g[1] then return nil end
  local at = tonumber(g[2]) or 0
  if now >= at then
    local cfg = cjson.decode(g[4] or '{}')
    local probes = tonumber(cfg.probes) or 1
    local reason = 'cool-down over'
    if g[1] == 'half-open' then reason = 'no verdict from the last probes' end
    at = now + (tonumber(cfg.cooldown_ms) or 30000)
    redis.call('HSET', meta_key, 'tripped', 'half-open', 'breaker_at', at,
               'breaker_probes', probes, 'breaker_passed', 0, 'breaker_since', now,
               'breaker_reason', reason)
    emit(events_key, meta_key, 'breaker', 'state', 'half-open', 'reason', reason,
         'probes', probes)
    return {probes, tostring(at), at - now}
  end
  if g[1] == 'half-open' then return {tonumber(g[3]) or 0, g[2], at - now} end
  return {0, false, at - now}
end

-- Take up to `count` ready jobs (wait list first, then by priority), make each active under a
-- fresh lock, and return {next_delay_ms, rate_limit_ms, id, token, fields, id, token, ...}.
-- next_delay_ms is -1 when nothing is delayed, else ms until the earliest delayed job is due;
-- rate_limit_ms is 0, or the ms until `limiter` (optional) lets jobs through again.
local function take_jobs(count, job_prefix, token_base, lock_ms, worker_id, now,
                         wait_key, paused_key, prioritized_key, pc_key, delayed_key,
                         active_key, marker_key, meta_key, events_key, limiter)
  local out = {-1, 0}
  promote_due(delayed_key, job_prefix, now, wait_key, paused_key, prioritized_key, pc_key,
              marker_key, meta_key, events_key)
  local gate = breaker_gate(meta_key, events_key, now)
  if gate and gate[1] < count then count = gate[1] end
  if count > 0 and not is_paused(meta_key) then
    local room, limited_ms = limiter_room(limiter, count)
    out[2] = limited_ms
    local taken = 0
    for _ = 1, room do
      local id = redis.call('RPOP', wait_key)
      local prev = 'wait'
      if not id then
        local popped = redis.call('ZPOPMIN', prioritized_key)
        id = popped[1]
        prev = 'prioritized'
      end
      if not id then break end
      local job_key = job_prefix .. id
      local fields = redis.call('HGETALL', job_key)
      if #fields > 0 then
        local started = 1
        for f = 1, #fields, 2 do
          if fields[f] == 'attempts_started' then
            started = (tonumber(fields[f + 1]) or 0) + 1
            break
          end
        end
        local token = token_base .. ':' .. started
        redis.call('ZADD', active_key, now, id)
        redis.call('SET', job_key .. ':lock', token, 'PX', lock_ms)
        -- the fields as they are now: a later pair wins over the one HGETALL read
        local changed = {'attempts_started', started, 'processed_on', now, 'worker', worker_id}
        if gate then -- a probe of the half-open breaker
          changed[#changed + 1] = 'probe'
          changed[#changed + 1] = gate[2]
          redis.call('HINCRBY', meta_key, 'breaker_probes', -1)
        end
        redis.call('HSET', job_key, unpack(changed))
        for _, v in ipairs(changed) do fields[#fields + 1] = tostring(v) end
        emit(events_key, meta_key, 'active', 'job_id', id, 'prev', prev)
        out[#out + 1] = id
        out[#out + 1] = token
        out[#out + 1] = fields
        taken = taken + 1
      end
    end
    count_taken(limiter, taken)
    -- wake the next worker for the jobs left, unless the limiter has no room for them
    if room == count and (redis.call('LLEN', wait_key) > 0
                          or redis.call('ZCARD', prioritized_key) > 0) then
      redis.call('ZADD', marker_key, 0, '0')
    end
  end
  local nxt = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')
  if nxt[2] then
    local d = tonumber(nxt[2]) - now
    if d < 0 then d = 0 end
    out[1] = d
  end
  if gate and (out[1] < 0 or gate[3] < out[1]) then out[1] = gate[3] end
  return out
end

-- Metrics. The latency histogram bucket of `ms` (an integer >= 0): 0 holds 0 ms; above that,
-- four buckets per power of two: bucket 4*e + q + 1 holds [2^e*(4+q)/4, 2^e*(5+q)/4) ms.
-- engine/metrics.py reads the buckets back.
local function latency_bucket(ms)
  if ms < 1 then return 0 end
  local e, p = 0, 1
  while p * 2 <= ms do
    p = p * 2
    e = e + 1
  end
  return 4 * e + math.floor((ms - p) * 4 / p) + 1
end

-- Count one finished job of `kind` (completed|failed) in the hash of the current minute,
-- `<metrics prefix><kind>:<minute start ms>` (built like job keys, so it is in the queue's
-- slot): `count`, and from the job's `processed_on`, `timestamp` and `delay` fields the
-- processing time (now - processed_on) and wait time (processed_on - timestamp - delay) as
-- histogram buckets `p<b>`/`w<b>`, sums `p_sum`/`w_sum` and `timed`. The counts gather in
-- `acc` (a table: metrics hash key -> {field -> increment}) until flush_metrics writes them,
-- so a batch of jobs costs one HINCRBY per field it touched. A window of 0 records nothing.
local function count_metrics(acc, metrics_prefix, kind, window_ms, now, processed_on,
                             timestamp, delay)
  window_ms = tonumber(window_ms) or 0
  if window_ms <= 0 then return end
  local minute = now - now % 60000
  local key = metrics_prefix .. kind .. ':' .. minute
  local fields = acc[key]
  if not fields then
    fields = {}
    acc[key] = fields
    acc[#acc + 1] = {key, minute + 60000 + window_ms}
  end
  local function add(field, n) fields[field] = (fields[field] or 0) + n end
  add('count', 1)
  local started = tonumber(processed_on)
  if started then
    local run = math.max(now - started, 0)
    local wait = math.max(started - (tonumber(timestamp) or started) - (tonumber(delay) or 0), 0)
    add('p' .. latency_bucket(run), 1)
    add('w' .. latency_bucket(wait), 1)
    add('timed', 1)
    add('p_sum', run)
    add('w_sum', wait)
  end
end

-- Write what count_metrics gathered in `acc`, and set each hash to expire `window_ms` after
-- its minute ends.
local function flush_metrics(acc)
  for _, entry in ipairs(acc) do
    local key = entry[1]
    for field, n in pairs(acc[key]) do
      redis.call('HINCRBY', key, field, n)
    end
    redis.call('PEXPIREAT', key, entry[2])
  end
end

-- Count and write at once the metrics of one finished job (see count_metrics).
local function record_metrics(metrics_prefix, kind, window_ms, now, job_key)
  if (tonumber(window_ms) or 0) <= 0 then return end
  local f = redis.call('HMGET', job_key, 'processed_on', 'timestamp', 'delay')
  local acc = {}
  count_metrics(acc, metrics_prefix, kind, window_ms, now, f[1], f[2], f[3])
  flush_metrics(acc)
end

-- A finished job of a flow is retried (retry_job, retry_jobs). A child whose end its parent
-- had booked (value, ignored or failed) is pending for it again; a doomed parent is not doomed
-- any more. A job that still has pending children goes to waiting-children: returns true
-- then, and false when the caller makes the job ready as usual.
local function requeue_flow_job(job_key, job_id, source, waiting_children_key, now)
  redis.call('HDEL', job_key, 'deferred_failure')
  local parent_key = redis.call('HGET', job_key, 'parent')
  if parent_key and redis.call('EXISTS', parent_key) == 1 then
    local booked
    if source == 'completed' then
      booked = redis.call('HDEL', parent_key .. ':processed', job_key)
    else
      booked = redis.call('ZREM', parent_key .. ':failed', job_key)
        + redis.call('HDEL', parent_key .. ':ignored', job_key)
    end
    if booked > 0 then redis.call('SADD', parent_key .. ':dependencies', job_key) end
  end
  if waiting_children_key and redis.call('SCARD', job_key .. ':dependencies') > 0 then
    redis.call('ZADD', waiting_children_key, now, job_id)
    return true
  end
  return false
end
