package redistransport

import "github.com/redis/go-redis/v9"

// fetchScript pops up to ARGV[1] messages the way kombu's BRPOP does
// (every queue's step-0 list first, then step 3, ...; queues in the
// consumer's cycle order, the served queue moved to the end under
// round_robin) and records each in the unacked hash and index in the same
// atomic step, so a consumer dying between the pop and the bookkeeping
// cannot lose a message. It decodes nothing: Lua's cjson took 45 ms per MB
// while Redis served no one else. Each message is recorded under a tag the
// caller made, as [item, "", queue], which restores it to the queue it came
// from (kombu's _lookup of the exchange "" is the routing key). It stops
// once ARGV[5] bytes were taken (always taking one), so a call moves a
// bounded amount of data. An item that is not a JSON object is returned
// with an empty tag, unrecorded, for the caller to set aside.
//
// KEYS: unacked, unacked_index, then the lists: queue q, step s at
// 3 + q*nsteps + s. ARGV: n, now, nsteps, rotate (1/0), max bytes, the
// number of queues nq, the cycle order (nq 0-based queue indexes), n tags,
// then the queue names as JSON strings by queue index. Returns a flat
// list: queue index, item, tag.
var fetchScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local ns = tonumber(ARGV[3])
local rot = ARGV[4] == '1'
local maxb = tonumber(ARGV[5])
local nq = tonumber(ARGV[6])
local order = {}
for i = 1, nq do order[i] = tonumber(ARGV[6 + i]) end
local tbase = 6 + nq
local qbase = tbase + n + 1
local out = {}
local bytes = 0
for c = 1, n do
  if bytes >= maxb then break end
  local got = false
  for s = 0, ns - 1 do
    for oi = 1, #order do
      local q = order[oi]
      local item = redis.call('RPOP', KEYS[3 + q * ns + s])
      if item then
        local tag = ''
        if string.byte(item, 1) == 123 then
          tag = ARGV[tbase + c]
          redis.call('ZADD', KEYS[2], ARGV[2], tag)
          redis.call('HSET', KEYS[1], tag, '[' .. item .. ', "", ' .. ARGV[qbase + q] .. ']')
        end
        bytes = bytes + #item
        out[#out + 1] = q
        out[#out + 1] = item
        out[#out + 1] = tag
        if rot then
          table.remove(order, oi)
          order[#order + 1] = q
        end
        got = true
        break
      end
    end
    if got then break end
  end
  if not got then break end
end
return out
`)

// publishScript routes a message through a direct exchange's binding set
// (members "routing_key SEP pattern SEP queue") and LPUSHes it to every
// bound queue once. KEYS: the binding set. ARGV: routing key, sep, key
// prefix, list suffix (priority), message. Returns how many queues got it.
var publishScript = redis.NewScript(`
local sep = ARGV[2]
local sent = {}
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local a = string.find(m, sep, 1, true)
  if a and string.sub(m, 1, a - 1) == ARGV[1] then
    local rest = string.sub(m, a + #sep)
    local b = string.find(rest, sep, 1, true)
    if b then
      local q = string.sub(rest, b + #sep)
      if not sent[q] then
        sent[q] = true
        redis.call('LPUSH', ARGV[3] .. q .. ARGV[4], ARGV[5])
        n = n + 1
      end
    end
  end
end
return n
`)

// restoreScript is kombu's restore_by_tag as one compare-and-set: when the
// unacked entry still holds ARGV[2] (or is absent and ARGV[2] is empty),
// it drops the entry from the hash and the index and pushes ARGV[3] to
// every list in KEYS[3..], with LPUSH (the back of the queue) when ARGV[4]
// is 1, else RPUSH (the front). Returns 1 restored, 0 nothing to restore,
// -1 the entry changed meanwhile.
var restoreScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if not cur then return 0 end
for i = 3, #KEYS do
  if ARGV[4] == '1' then
    redis.call('LPUSH', KEYS[i], ARGV[3])
  else
    redis.call('RPUSH', KEYS[i], ARGV[3])
  end
end
return 1
`)

// asideScript moves a bad message to the dead-letter list and drops its
// unacked entry if it has one. KEYS: unacked, unacked_index, dead-letter
// list. ARGV: tag (may be empty), item.
var asideScript = redis.NewScript(`
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('LPUSH', KEYS[3], ARGV[2])
return 1
`)

// unlockScript releases the restore mutex if this consumer still holds it
// (the same check redis-py's Lock.release makes).
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
