-- wrk script of benchmarks/lobby_throughput.py: every request carries the bearer token of one of
-- LOBBY_TOKENS' players (one token a line), rotating, so the lobby verifies a different player's
-- token each time and its per-player rate limit counts 10,000 players, not one.
--
-- LOBBY_MODE:
--   heartbeat    POST /v1/presence {"region":"local"}
--   leaderboard  GET /v1/leaderboards/quick/daily?limit=10
--   tickets      per connection, a cycle: POST /v1/tickets, GET /v1/tickets/{id}, DELETE it.
--                Run it with as many threads as connections (-t N -c N): the cycle's state is the
--                thread's, so it needs one connection per thread.

local mode = os.getenv("LOBBY_MODE") or "heartbeat"
local tokens = {}
local n = 0
local i = 0
local step = 0 -- tickets: 0 create, 1 poll, 2 cancel
local ticket = nil
local current = nil
local made = 0

function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

function init(args)
  for line in io.lines(os.getenv("LOBBY_TOKENS")) do
    if #line > 0 then
      n = n + 1
      tokens[n] = line
    end
  end
  i = ((tid or 0) * 7919) % n -- threads start far apart in the token list
end

local function headers(token)
  return { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
end

local function next_token()
  i = i % n + 1
  return tokens[i]
end

function request()
  if mode == "heartbeat" then
    return wrk.format("POST", "/v1/presence", headers(next_token()), '{"region":"local"}')
  elseif mode == "leaderboard" then
    return wrk.format("GET", "/v1/leaderboards/quick/daily?limit=10", headers(next_token()))
  end
  if step == 0 then
    current = next_token()
    return wrk.format("POST", "/v1/tickets", headers(current), '{"race_type":"quick","region":"local"}')
  elseif step == 1 then
    return wrk.format("GET", "/v1/tickets/" .. ticket, headers(current))
  end
  return wrk.format("DELETE", "/v1/tickets/" .. ticket, headers(current))
end

if mode == "tickets" then
  -- Defined only here: wrk reads every body when response() exists.
  function response(status, hdrs, body)
    if step == 0 then
      ticket = body and body:match('"ticket_id": *"([^"]+)"')
      if status == 201 and ticket then
        step = 1
      end -- else the next request creates with the next player
    elseif step == 1 then
      step = 2
    else
      step = 0
    end
  end
end
