// Package pipeline is the orchestrator: the fasthttp ingress, decoding and
// validation, the policy (retry, backoff, failover, deadline, retry budget),
// the engine that drives one request machine per request through that policy,
// and the journal that logs every transition as a replayable line.
//
// It knows nothing of provider wire formats: it calls providers.Provider and
// decides from the error class alone. It imports fsm and providers of this
// module, never mock.
package pipeline
