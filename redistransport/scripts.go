package redistransport

import "github.com/redis/go-redis/v9"

// fetchScript pops up to ARGV[1] messages the way kombu's BRPOP does
// (every queue's step-0 list first, then step 3, ...; queues in the
// consumer's cycle order, the served queue moved to the end under
// round_robin) and records each in the unacked hash and index in the same
// atomic step, so a consumer dying between the pop and the bookkeeping
// cannot lose a message. An item whose envelope Lua cannot read is returned
// with an empty tag for the caller to handle.
//
// KEYS: unacked, unacked_index, then the lists: queue q, step s at
// 3 + q*nsteps + s. ARGV: n, now, nsteps, rotate (1/0), cycle order
// (0-based queue indexes). Returns a flat list: queue index, item, tag.
var fetchScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local ns = tonumber(ARGV[3])
local rot = ARGV[4] == '1'
local order = {}
for i = 5, #ARGV do order[#order + 1] = tonumber(ARGV[i]) end
local out = {}
for c = 1, n do
  local got = false
  for s = 0, ns - 1 do
    for oi = 1, #order do
      local q = order[oi]
      local item = redis.call('RPOP', KEYS[3 + q * ns + s])
      if item then
        local tag = ''
        local ok, env = pcall(cjson.decode, item)
        if ok and type(env) == 'table' and type(env.properties) == 'table' then
          local p = env.properties
          local di = p.delivery_info
          if type(p.delivery_tag) == 'string' and p.delivery_tag ~= '' and type(di) == 'table'
              and type(di.exchange) == 'string' and type(di.routing_key) == 'string' then
            tag = p.delivery_tag
            redis.call('ZADD', KEYS[2], ARGV[2], tag)
            redis.call('HSET', KEYS[1], tag,
              '[' .. item .. ', ' .. cjson.encode(di.exchange) .. ', ' .. cjson.encode(di.routing_key) .. ']')
          end
        end
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
