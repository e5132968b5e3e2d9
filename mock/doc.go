// Package mock is a stand-in for the OpenAI and Anthropic APIs: a fasthttp
// server that speaks OpenAI Chat Completions (POST /v1/chat/completions) and
// Anthropic Messages (POST /v1/messages) on the wire exactly as the real APIs
// do — success bodies, error bodies and statuses, request-id and rate-limit
// headers, both SSE streaming formats — and injects faults on demand through
// a small control API under /mock/.
//
// The demo, every end-to-end test and the benchmarks run against it, so it is
// deterministic (the reply is derived from the last user message, token
// counts are word counts), validates requests as strictly as the real APIs
// (so a wrong translation in the gateway fails a test instead of passing
// silently), and is cheap enough not to be the bottleneck of a benchmark.
//
// It imports no other package of this module. In particular it must not share
// the gateway adapters' wire code: a shared bug there would make the adapters
// and the mock agree with each other and disagree with the real APIs.
//
// See docs/mock.md for the endpoints, faults, flags and magic triggers.
package mock
