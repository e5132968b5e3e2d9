// Package providers is everything the pipeline needs to call one target and
// understand the outcome: the Provider interface with the canonical
// (OpenAI-shaped) request and answer, the OpenAI and Anthropic adapters over
// fasthttp clients, the error classes of DESIGN §4, one circuit breaker per
// provider (the breaker machine of package fsm), the route table and the
// providers' settings.
//
// It knows nothing of the pipeline's policy (retry, backoff, failover): it
// classifies, the pipeline decides. It imports only package fsm of this module.
package providers
