package pipeline

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/valyala/fasthttp"
)

// Gateway auth (DESIGN §5): off unless auth.keys are set. With keys, /v1/*
// requires "Authorization: Bearer KEY"; with admin_keys, /admin/* and
// /metrics require one of those. /healthz and /readyz stay open for load
// balancers. A refusal is a 401 in the OpenAI error shape and a journal line
// that never carries the key.

// keyring holds the SHA-256 digests of the accepted keys. Comparing digests
// makes every comparison the same length, so neither a key's content nor its
// length shows in the time a refusal takes; every key is compared, with no
// early exit on a match.
type keyring struct {
	digests [][sha256.Size]byte
}

func newKeyring(keys []string) keyring {
	k := keyring{digests: make([][sha256.Size]byte, len(keys))}
	for i, key := range keys {
		k.digests[i] = sha256.Sum256([]byte(key))
	}
	return k
}

// enabled reports whether any key is configured.
func (k keyring) enabled() bool { return len(k.digests) > 0 }

// accepts reports in constant time (for a given number of keys) whether key
// is one of the ring's.
func (k keyring) accepts(key []byte) bool {
	d := sha256.Sum256(key)
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	return match == 1
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header (the
// scheme is case-insensitive), or nil.
func bearer(h []byte) []byte {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil
	}
	return bytes.TrimSpace(h[len(scheme):])
}

// authScope is what a path requires.
type authScope int

const (
	scopeOpen  authScope = iota // /healthz, /readyz and unknown paths outside /v1
	scopeAPI                    // /v1/*: auth.keys
	scopeAdmin                  // /admin/* and /metrics: auth.admin_keys
)

func scopeOf(path []byte) authScope {
	switch {
	case bytes.HasPrefix(path, []byte("/v1/")):
		return scopeAPI
	case bytes.HasPrefix(path, []byte("/admin/")), bytes.Equal(path, []byte("/metrics")):
		return scopeAdmin
	}
	return scopeOpen
}

// authorize checks the request's key against its path's keyring. On refusal
// it has answered 401, logged and counted it, and returns false.
func (s *Server) authorize(ctx *fasthttp.RequestCtx) bool {
	scope := scopeOf(ctx.Path())
	ring := s.apiKeys
	switch scope {
	case scopeOpen:
		return true
	case scopeAdmin:
		ring = s.adminKeys
	}
	if !ring.enabled() {
		return true
	}
	key := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if key != nil && ring.accepts(key) {
		return true
	}
	reason := "missing_key"
	if key != nil {
		reason = "invalid_key"
	}
	msg := authMessages[b2i(scope == scopeAdmin)][b2i(key != nil)]
	id := requestID(ctx)
	s.metrics.authFailed(scope == scopeAdmin, key != nil)
	s.journal.Message(levelWarn, "unauthorized", "request_id", id, "path", truncate(string(ctx.Path()), 100),
		"remote", remoteIP(ctx), "reason", reason)
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="llm-gateway"`)
	writeError(ctx, id, &apiError{Status: 401, Type: typeInvalidRequest, Code: "invalid_api_key", Message: msg}, 0, 0)
	return false
}

// authMessages says what is wrong and which header is expected, by
// [admin scope][a key was sent].
var authMessages = [2][2]string{
	{
		"missing API key: send the header Authorization: Bearer YOUR_KEY with one of the gateway's keys (auth.keys)",
		"invalid API key: the key sent in Authorization: Bearer is not one of the gateway's keys (auth.keys)",
	},
	{
		"missing admin key: send the header Authorization: Bearer YOUR_KEY with one of the gateway's admin keys (auth.admin_keys)",
		"invalid admin key: the key sent in Authorization: Bearer is not one of the gateway's admin keys (auth.admin_keys)",
	},
}

func remoteIP(ctx *fasthttp.RequestCtx) string {
	if ip := ctx.RemoteIP(); ip != nil {
		return ip.String()
	}
	return ""
}
