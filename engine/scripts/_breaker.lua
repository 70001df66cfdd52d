-- Circuit breaker helpers (protocol §25), pasted after _common where a script says
-- "-- include: _breaker". The settings live in meta field `breaker` (JSON); the state in meta
-- fields `tripped` and `breaker_*`; the failure window in the `breaker-window` hash.

local BREAKER_BUCKETS = 10 -- the window is counted in this many buckets of window_ms / 10

local function breaker_window_fields(n)
  local names = {}
  for i = n - BREAKER_BUCKETS + 1, n do
    names[#names + 1] = 'ok:' .. i
    names[#names + 1] = 'fail:' .. i
  end
  return names
end

-- Drop the buckets older than `oldest`; runs only when a new bucket is created, so the hash
-- holds at most about 2 * (BREAKER_BUCKETS + 1) fields.
local function breaker_prune(window_key, oldest)
  for _, f in ipairs(redis.call('HKEYS', window_key)) do
    local n = tonumber(string.match(f, ':(%d+)$'))
    if not n or n < oldest then redis.call('HDEL', window_key, f) end
  end
end

-- Open the breaker: workers take no job of the queue until the cool-down is over.
local function breaker_open(meta_key, window_key, events_key, cfg, now, reason, ...)
  redis.call('HSET', meta_key, 'tripped', 'open', 'breaker_at', now + cfg.cooldown_ms,
             'breaker_since', now, 'breaker_reason', reason)
  redis.call('HDEL', meta_key, 'breaker_probes', 'breaker_passed')
  redis.call('HINCRBY', meta_key, 'breaker_trips', 1)
  redis.call('DEL', window_key)
  emit(events_key, meta_key, 'breaker', 'state', 'open', 'reason', reason, 'by', 'breaker', ...)
end

-- Close the breaker (no-op when it is closed): a fresh window, and idle workers are woken.
-- Returns true when it was open or half-open.
local function breaker_close(meta_key, window_key, events_key, marker_key, now, reason, by)
  redis.call('DEL', window_key)
  if redis.call('HEXISTS', meta_key, 'tripped') == 0 then return false end
  redis.call('HDEL', meta_key, 'tripped', 'breaker_at', 'breaker_probes', 'breaker_passed')
  redis.call('HSET', meta_key, 'breaker_since', now, 'breaker_reason', reason)
  if not is_paused(meta_key) then redis.call('ZADD', marker_key, 0, '0') end
  emit(events_key, meta_key, 'breaker', 'state', 'closed', 'reason', reason, 'by', by)
  return true
end

-- Count one finished attempt (`ok` = completed) of the job at `job_key`, if the queue has a
-- breaker. Closed: count it in the window and trip when the failure rate reaches the
-- threshold. Open: not counted (the job was taken before the trip). Half-open: only the probes
-- of the current round count; one failure opens the breaker again, `probes` successes close it.
local function breaker_record(meta_key, window_key, events_key, marker_key, job_key, job_id,
                              ok, now)
  local m = redis.call('HMGET', meta_key, 'breaker', 'tripped', 'breaker_at')
  if not m[1] then return end
  local cfg = cjson.decode(m[1])
  if m[2] == 'half-open' then
    if redis.call('HGET', job_key, 'probe') ~= m[3] then return end
    redis.call('HDEL', job_key, 'probe')
    if not ok then
      breaker_open(meta_key, window_key, events_key, cfg, now, 'probe job ' .. job_id .. ' failed')
    elseif redis.call('HINCRBY', meta_key, 'breaker_passed', 1) >= cfg.probes then
      breaker_close(meta_key, window_key, events_key, marker_key, now,
                    cfg.probes .. ' probe job(s) succeeded', 'breaker')
    end
    return
  end
  if m[2] then return end

  local bucket_ms = math.max(1, math.floor(cfg.window_ms / BREAKER_BUCKETS))
  local n = math.floor(now / bucket_ms)
  local field = 'fail:' .. n
  if ok then field = 'ok:' .. n end
  if redis.call('HINCRBY', window_key, field, 1) == 1 then
    breaker_prune(window_key, n - BREAKER_BUCKETS + 1)
    redis.call('PEXPIRE', window_key, cfg.window_ms * 2)
  end
  local counts = redis.call('HMGET', window_key, unpack(breaker_window_fields(n)))
  local calls, failures = 0, 0
  for i = 1, #counts, 2 do
    local oks, fails = tonumber(counts[i]) or 0, tonumber(counts[i + 1]) or 0
    calls = calls + oks + fails
    failures = failures + fails
  end
  if calls >= cfg.min_calls and failures >= cfg.failure_rate * calls then
    local reason = string.format('%d of %d calls failed in the last %d ms', failures, calls,
                                 cfg.window_ms)
    breaker_open(meta_key, window_key, events_key, cfg, now, reason,
                 'failures', failures, 'calls', calls)
  end
end
