"""
The Lua scripts of the Redis store: one atomic append, one atomic query.

Keys of one sandbox share the hash tag ``{<workspace>:<sandbox>}``, so each script
touches a single Redis Cluster slot (the index keys the append script deletes are
built from a declared key's name and carry the same tag).

Every stream entry id is ``<ms>-0``: the millisecond timestamp *is* the id, unique and
strictly increasing per sandbox whichever gateway process appended it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPEND", "QUERY"]

APPEND: Final = """
-- KEYS[1] the sandbox's event stream, KEYS[2] the type's index stream,
-- KEYS[3] the sandbox's type set (type -> newest ms).
-- ARGV[1] type, ARGV[2] event id, ARGV[3] SandboxEvent JSON up to the timestamp,
-- ARGV[4] retention, ARGV[5] 'SPUBLISH' | 'PUBLISH', ARGV[6] channel,
-- ARGV[7] index key name without the type.
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
-- max(now, newest + 1): unique and increasing even if Redis' clock steps back.
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if newest then
  local newest_ms = tonumber(string.match(newest[1], '^%d+'))
  if newest_ms >= ts then ts = newest_ms + 1 end
end
local ms = string.format('%.0f', ts)
local id = ms .. '-0'
local json = ARGV[3] .. ms .. '}'
-- '~': Redis drops whole stream nodes, which is far cheaper than exact trimming;
-- queries hide the few surplus entries, so readers see exactly ARGV[4] events.
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], id,
           't', ARGV[1], 'i', ARGV[2], 'j', json)
-- The index entry holds nothing but its id: the event lives in KEYS[1] only.
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], id, 'x', '')
redis.call('ZADD', KEYS[3], ts, ARGV[1])
-- Now and then, delete the index streams of types whose newest event was trimmed
-- away, so that a sandbox using many types does not leave dead keys behind.
if ts % 64 == 0 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  local floor = string.match(oldest[1], '^%d+')
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. floor,
                          'LIMIT', 0, 32)
  for _, kind in ipairs(dead) do redis.call('DEL', ARGV[7] .. kind) end
  if #dead > 0 then redis.call('ZREM', KEYS[3], unpack(dead)) end
end
-- Published inside the script: every process sees events in stream order.
if ARGV[5] ~= '' then
  redis.call(ARGV[5], ARGV[6],
             ms .. ' ' .. ARGV[2] .. ' ' .. #ARGV[1] .. ' ' .. ARGV[1] .. json)
end
return ts
"""
"""Append one event; returns its millisecond timestamp (= its stream id)."""

QUERY: Final = """
-- KEYS[1] the sandbox's event stream, KEYS[2] the stream to range over: the same
-- one, or a type's index stream.
-- ARGV[1] retention, ARGV[2] since ('' for the newest events), ARGV[3] limit.
local n = redis.call('XLEN', KEYS[1])
if n == 0 then return {} end
-- Approximate trimming may keep a few events more than the retention: the oldest
-- kept one is the floor. The surplus is at most a stream node, so this is cheap.
local floor = 0
local retention = tonumber(ARGV[1])
if n > retention then
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - retention + 1)
  floor = tonumber(string.match(head[#head][1], '^%d+'))
end
local limit = tonumber(ARGV[3])
local found
if ARGV[2] ~= '' then
  local start = math.max(tonumber(ARGV[2]) + 1, floor)
  found = redis.call('XRANGE', KEYS[2], string.format('%.0f', start), '+',
                     'COUNT', limit)
else
  found = redis.call('XREVRANGE', KEYS[2], '+', string.format('%.0f', floor),
                     'COUNT', limit)
end
if KEYS[1] == KEYS[2] then return found end
-- A type's index holds ids only: look each event up, O(log n) apiece.
local events = {}
for _, entry in ipairs(found) do
  local event = redis.call('XRANGE', KEYS[1], entry[1], entry[1])[1]
  if event then events[#events + 1] = event end
end
return events
"""
"""Query one sandbox; returns ``[[id, [t, type, i, event id, j, json]], ...]``."""
