-- Shared helpers, pasted into a script by the loader where it says "-- include: _common".
-- Every helper takes the key names it touches as arguments, so each script still declares
-- all of its queue-level keys in KEYS.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to the queue's capped stream. `...` are field/value pairs after `event`.
local function emit(events_key, meta_key, event, ...)
  local max_events = tonumber(redis.call('HGET', meta_key, 'max_events')) or 10000
  redis.call('XADD', events_key, 'MAXLEN', '~', max_events, '*', 'event', event, ...)
end

local function is_paused(meta_key)
  return redis.call('HEXISTS', meta_key, 'paused') == 1
end

-- Put a job where workers take ready jobs from: the prioritized zset when it has a priority,
-- else the wait list (or the paused list while the queue is paused). Wakes one idle worker.
local function push_ready(job_id, priority, lifo, wait_key, paused_key, prioritized_key,
                          pc_key, marker_key, meta_key)
  local paused = is_paused(meta_key)
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
  redis.call('DEL', job_key, job_key .. ':lock', job_key .. ':logs')
end

-- Free the deduplication id a job holds (its hash field `dedup_key` names the key), if the key
-- still holds this job: always when the job is removed; when it finishes, only if the key has
-- no TTL (a TTL keeps throttling until it runs out). Call before the job hash is deleted.
local function release_dedup(job_key, job_id, removing)
  local dedup_key = redis.call('HGET', job_key, 'dedup_key')
  if dedup_key and redis.call('GET', dedup_key) == job_id
      and (removing or redis.call('PTTL', dedup_key) == -1) then
    redis.call('DEL', dedup_key)
  end
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

-- Move delayed jobs whose time has come to the ready structures (at most 1000 per call).
local function promote_due(delayed_key, job_prefix, now, wait_key, paused_key,
                           prioritized_key, pc_key, marker_key, meta_key, events_key)
  local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed_key, id)
    local priority = tonumber(redis.call('HGET', job_prefix .. id, 'priority')) or 0
    push_ready(id, priority, false, wait_key, paused_key, prioritized_key, pc_key,
               marker_key, meta_key)
    emit(events_key, meta_key, 'waiting', 'job_id', id, 'prev', 'delayed')
  end
end

-- Circuit breaker gate (protocol §17): nil while no breaker holds the queue; else
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
-- fresh lock, and return {next_delay_ms, id, token, fields, id, token, fields, ...}.
-- next_delay_ms is -1 when nothing is delayed, else ms until the earliest delayed job is due.
local function take_jobs(count, job_prefix, token_base, lock_ms, worker_id, now,
                         wait_key, paused_key, prioritized_key, pc_key, delayed_key,
                         active_key, marker_key, meta_key, events_key)
  local out = {-1}
  promote_due(delayed_key, job_prefix, now, wait_key, paused_key, prioritized_key, pc_key,
              marker_key, meta_key, events_key)
  local gate = breaker_gate(meta_key, events_key, now)
  if gate and gate[1] < count then count = gate[1] end
  if count > 0 and not is_paused(meta_key) then
    for _ = 1, count do
      local id = redis.call('RPOP', wait_key)
      local prev = 'wait'
      if not id then
        local popped = redis.call('ZPOPMIN', prioritized_key)
        id = popped[1]
        prev = 'prioritized'
      end
      if not id then break end
      local job_key = job_prefix .. id
      if redis.call('EXISTS', job_key) == 1 then
        local started = redis.call('HINCRBY', job_key, 'attempts_started', 1)
        local token = token_base .. ':' .. started
        redis.call('ZADD', active_key, now, id)
        redis.call('SET', job_key .. ':lock', token, 'PX', lock_ms)
        redis.call('HSET', job_key, 'processed_on', now, 'worker', worker_id)
        if gate then -- a probe of the half-open breaker
          redis.call('HSET', job_key, 'probe', gate[2])
          redis.call('HINCRBY', meta_key, 'breaker_probes', -1)
        end
        emit(events_key, meta_key, 'active', 'job_id', id, 'prev', prev)
        out[#out + 1] = id
        out[#out + 1] = token
        out[#out + 1] = redis.call('HGETALL', job_key)
      end
    end
    if redis.call('LLEN', wait_key) > 0 or redis.call('ZCARD', prioritized_key) > 0 then
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
