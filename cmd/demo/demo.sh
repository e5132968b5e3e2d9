#!/usr/bin/env bash
# The demo: builds nothing itself (make demo builds first), starts the mock
# provider and the orchestrator on the embedded default configuration, runs the
# five scenarios with curl, printing each answer and that request's log lines,
# then stops both.
#
#   MOCK_PORT=8001 GATEWAY_PORT=8080 cmd/demo/demo.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

MOCK_PORT=${MOCK_PORT:-8001}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
MOCK="http://127.0.0.1:${MOCK_PORT}"
GW="http://127.0.0.1:${GATEWAY_PORT}"
LOGS=${DEMO_LOGS:-demo-logs}
mkdir -p "$LOGS"
: >"$LOGS/orchestrator.log"
: >"$LOGS/mock.log"

bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'
[ -t 1 ] || { bold=; dim=; off=; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for port in "$MOCK_PORT" "$GATEWAY_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is already in use; stop what runs there, or set MOCK_PORT / GATEWAY_PORT" >&2
    exit 1
  fi
done

config=()
if [ "$MOCK_PORT" != 8001 ]; then
  bin/orchestrator -print-default-config | sed "s#127.0.0.1:8001#127.0.0.1:${MOCK_PORT}#" >"$LOGS/config.yaml"
  config=(-config "$LOGS/config.yaml")
fi

bin/mock-provider -listen "127.0.0.1:${MOCK_PORT}" -latency 100ms 2>>"$LOGS/mock.log" &
pids+=($!)
bin/orchestrator -listen "127.0.0.1:${GATEWAY_PORT}" "${config[@]}" 2>>"$LOGS/orchestrator.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -sf "$GW/healthz" >/dev/null 2>&1 && curl -sf "$MOCK/mock/stats" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -sf "$GW/healthz" >/dev/null || { echo "demo: the orchestrator did not start; see $LOGS/orchestrator.log" >&2; cat "$LOGS/orchestrator.log" >&2; exit 1; }

# summary: the answer's gateway fields (the original spec's response) on a
# few lines; the full body is the OpenAI chat.completion or error object.
summary() {
  python3 -c '
import json, sys
a = json.load(sys.stdin)
keys = ["request_id", "content", "provider", "attempts", "total_latency_ms"]
if "error" in a:
    keys = ["error", "request_id", "attempts", "total_latency_ms"]
print(json.dumps({k: a[k] for k in keys if k in a}, indent=2))
' 2>/dev/null || cat
}

field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1"; }

# journey ID: the actions logged for one request, on one line.
journey() { grep -F "request_id=$1 " "$LOGS/orchestrator.log" | grep -o 'action=[a-z_]*' | sed 's/action=//' | paste -sd' ' -; }

fault() { curl -sf -X POST "$MOCK/mock/faults" -H 'Content-Type: application/json' -d "$1" >/dev/null; }

# ask ID BODY: sends one chat completion with X-Request-ID ID, prints the
# answer, the time it took and the orchestrator's log lines for that ID.
ask() {
  local id=$1 body=$2 out code time
  out=$(curl -s -o "$LOGS/answer.json" -w '%{http_code} %{time_total}' \
    -H 'Content-Type: application/json' -H "X-Request-ID: $id" -d "$body" "$GW/v1/chat/completions")
  code=${out%% *}; time=${out##* }
  echo "${bold}→ HTTP $code in ${time}s${off}"
  summary <"$LOGS/answer.json"
  sleep 0.2 # the journal flushes every 50 ms
  echo "${dim}orchestrator log for $id:${off}"
  grep -F "request_id=$id " "$LOGS/orchestrator.log" | sed 's/ machine=.*//' | sed 's/^/  /'
  echo
}

scenario() { echo; echo "${bold}=== $1 ===${off}"; echo "$2"; echo; }

HELLO='{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}'
run_id=$(date +%s)

scenario "1. Happy path" "A normal request: one attempt at OpenAI, about 100 ms (the mock's latency)."
echo "\$ curl -X POST $GW/v1/chat/completions -H 'Content-Type: application/json' -d '$HELLO'"
ask "demo-happy-$run_id" "$HELLO"

scenario "2. Timeout + retry" "OpenAI is slow twice (3 s; the attempt timeout is 1 s). The gateway retries with backoff 2 s, then 4 s, and the third attempt succeeds (about 8 s in all)."
echo "\$ curl -X POST $MOCK/mock/faults -d '{\"provider\":\"openai\",\"fault\":\"timeout\",\"count\":2,\"delay_ms\":3000}'"
fault '{"provider":"openai","fault":"timeout","count":2,"delay_ms":3000}'
ask "demo-timeout-$run_id" "$HELLO"

scenario "3. Rate limit + failover" "OpenAI answers 429. The gateway switches at once to Anthropic, translating the request and the answer: 2 attempts, no wait."
echo "\$ curl -X POST $MOCK/mock/faults -d '{\"provider\":\"openai\",\"fault\":\"rate_limit\",\"count\":1}'"
fault '{"provider":"openai","fault":"rate_limit","count":1}'
ask "demo-ratelimit-$run_id" "$HELLO"

scenario "4. Circuit breaker" "A success first (it resets OpenAI's failure count). Then OpenAI goes down (every connection reset): each request fails over to Anthropic, and the 5th failure in a row trips OpenAI's breaker. The next request skips OpenAI without calling it."
ask "demo-breaker-0-$run_id" "$HELLO"
echo "\$ curl -X POST $MOCK/mock/faults -d '{\"provider\":\"openai\",\"fault\":\"reset\"}'"
fault '{"provider":"openai","fault":"reset"}'
for i in 1 2 3 4 5; do
  id="demo-breaker-$i-$run_id"
  code=$(curl -s -o "$LOGS/answer.json" -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Request-ID: $id" -d "$HELLO" "$GW/v1/chat/completions")
  sleep 0.1
  echo "  request $i → HTTP $code from $(field provider <"$LOGS/answer.json"); journey: $(journey "$id")"
done
sleep 0.2
echo "${dim}breaker transitions:${off}"
grep -F 'machine=breaker' "$LOGS/orchestrator.log" | sed 's/ machine=.*//' | sed 's/^/  /'
openai_requests() { curl -s "$MOCK/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["openai"]["requests"])'; }
before=$(openai_requests)
ask "demo-breaker-6-$run_id" "$HELLO"
after=$(openai_requests)
echo "OpenAI requests received by the mock: before $before, after $after (no call while the breaker is open)"
echo "\$ curl $GW/admin/breakers"
curl -s "$GW/admin/breakers" | python3 -c '
import json, sys
for b in json.load(sys.stdin)["breakers"]:
    print("  %-10s %-9s trips=%d failures=%d next_probe_at=%s" % (b["provider"], b["state"], b["trips"], b["failures"], b.get("next_probe_at", "-")))
' 
curl -sf -X DELETE "$MOCK/mock/faults" >/dev/null

scenario "5. Validation" "An invalid role fails in well under 10 ms with a clear error; no provider is called."
before=$(curl -s "$MOCK/mock/stats")
ask "demo-invalid-$run_id" '{"model":"gpt-4","messages":[{"role":"robot","content":"Hello"}]}'
after=$(curl -s "$MOCK/mock/stats")
if [ "$before" = "$after" ]; then echo "mock counters unchanged: no provider call"; else echo "mock counters changed!"; fi

scenario "Replay" "The log is the transition record. The orchestrator stops (SIGTERM: it drains and flushes), then fsmctl replay re-drives every request machine and breaker from the log alone, checks each step against the transition tables, and prints one journey and the summary."
kill -TERM "${pids[1]}" && wait "${pids[1]}" 2>/dev/null || true
echo "\$ bin/fsmctl replay --request-id demo-timeout-$run_id $LOGS/orchestrator.log"
status=0
bin/fsmctl replay --request-id "demo-timeout-$run_id" "$LOGS/orchestrator.log" || status=$?
if [ "$status" = 0 ]; then echo "${bold}replay: clean${off} (exit 0)"; else echo "${bold}replay found problems${off} (exit $status)"; fi

echo
echo "${bold}Done.${off} Full logs: $LOGS/orchestrator.log and $LOGS/mock.log"
exit "$status"
