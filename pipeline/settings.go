package pipeline

import (
	"fmt"
	"strings"
	"time"
)

// Settings is the pipeline's part of the configuration file. Zero values mean
// the defaults documented on each field (see ApplyDefaults).
type Settings struct {
	Server ServerSettings `yaml:"server"`
	Policy Policy         `yaml:"policy"`
	Auth   AuthSettings   `yaml:"auth"`
	Log    LogSettings    `yaml:"log"`
}

// ServerSettings configures the ingress.
type ServerSettings struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string `yaml:"listen"`
	// MaxBodyBytes is the largest request body answered normally; larger
	// bodies get 413. Default 1 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxMessages caps the messages of one request (400 above). Default 2048.
	MaxMessages int `yaml:"max_messages"`
	// MaxContentChars caps the characters of one request's message contents
	// (string contents and text parts, all messages together; 400 above).
	// Default 1,000,000.
	MaxContentChars int `yaml:"max_content_chars"`
	// MaxHeaderBytes caps the request line and headers of one request (431
	// above). It is fasthttp's read buffer, allocated per connection, so it
	// also sets the memory an idle connection holds. Default 8 KiB; between
	// 1 KiB and 1 MiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadTimeout bounds reading one request, headers and body, from the
	// request's first byte (for a connection's first request, from the
	// connection's opening): a client that trickles its request is answered
	// 408 and cut when it passes. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one non-streamed answer; a client that
	// does not read it is cut. Streams are exempt (a stream may flow for
	// minutes; its heartbeat finds a client that left). Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Heartbeat is how often an idle stream gets a ": ping" comment, which
	// keeps proxies from closing it and shows whether the client is still
	// there. Default 10s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// MaxConns caps the client connections open at once; a connection past
	// it is answered 503 (code too_many_connections, Retry-After: 1) and
	// closed. Default 10000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP caps the connections open at once from one client
	// address; past it, 429 and close. Default 0: no per-address limit (a
	// gateway behind a load balancer or NAT sees few addresses).
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// DrainTimeout is how long Shutdown waits for the requests in flight,
	// streams included, before it gives up on them. Default 30s. The
	// orchestrator's -drain flag overrides it.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Policy is what the engine does with failures (DESIGN §4).
type Policy struct {
	// MaxAttempts is the number of calls to one target before failing over.
	// Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// AttemptTimeout bounds one provider call. Default 30s (the embedded
	// demo configuration sets 1s).
	AttemptTimeout time.Duration `yaml:"attempt_timeout"`
	// Deadline bounds the whole request, every wait included, up to the
	// first byte of a stream. Default 60s.
	Deadline time.Duration `yaml:"deadline"`
	// FirstTokenTimeout bounds a streamed attempt until its first chunk;
	// past it the attempt is a timeout and is retried or failed over.
	// Default: AttemptTimeout.
	FirstTokenTimeout time.Duration `yaml:"first_token_timeout"`
	// StreamIdleTimeout ends a stream whose upstream sends nothing for this
	// long after its first chunk (a timeout, counted by the breaker).
	// Default 30s.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
	// StreamContinuation, when true, resumes a stream cut after its first
	// byte on the next target that continues a prefill (Anthropic), sending
	// the text so far as a final assistant message, so the client sees one
	// answer. Off by default; see docs/streaming.md for its limits.
	StreamContinuation bool `yaml:"stream_continuation"`
	// Backoff shapes the waits between attempts on one target.
	Backoff Backoff `yaml:"backoff"`
	// RetryBudget caps retries per provider.
	RetryBudget BudgetSettings `yaml:"retry_budget"`
}

// Jitter modes of Backoff.
const (
	JitterNone  = "none"
	JitterFull  = "full"
	JitterEqual = "equal"
)

// Backoff is exponential: Base * Factor^(n-1), capped at Max.
type Backoff struct {
	Base   time.Duration `yaml:"base"`   // default 2s
	Factor float64       `yaml:"factor"` // default 2
	Max    time.Duration `yaml:"max"`    // default 30s
	Jitter string        `yaml:"jitter"` // none (default), full or equal
}

// BudgetSettings caps retries per provider over a sliding window: at most
// Ratio of the provider's calls, but always at least MinRetries.
type BudgetSettings struct {
	Window     time.Duration `yaml:"window"`      // default 10s
	Ratio      float64       `yaml:"ratio"`       // default 0.2
	MinRetries int           `yaml:"min_retries"` // default 10
}

// AuthSettings turns on gateway auth.
type AuthSettings struct {
	// Keys, when any are set, are required as "Authorization: Bearer KEY" on
	// /v1/*.
	Keys []string `yaml:"keys"`
	// AdminKeys, when any are set, are required on /admin/* and /metrics.
	AdminKeys []string `yaml:"admin_keys"`
}

// LogSettings configures the journal.
type LogSettings struct {
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// ApplyDefaults fills every zero field with its default.
func (s *Settings) ApplyDefaults() {
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if s.Server.Listen == "" {
		s.Server.Listen = ":8080"
	}
	if s.Server.MaxBodyBytes == 0 {
		s.Server.MaxBodyBytes = 1 << 20
	}
	if s.Server.MaxMessages == 0 {
		s.Server.MaxMessages = 2048
	}
	if s.Server.MaxContentChars == 0 {
		s.Server.MaxContentChars = 1_000_000
	}
	if s.Server.MaxHeaderBytes == 0 {
		s.Server.MaxHeaderBytes = 8 << 10
	}
	if s.Server.MaxConns == 0 {
		s.Server.MaxConns = 10_000
	}
	def(&s.Server.ReadTimeout, 30*time.Second)
	def(&s.Server.WriteTimeout, 30*time.Second)
	def(&s.Server.DrainTimeout, 30*time.Second)
	def(&s.Server.IdleTimeout, 120*time.Second)
	def(&s.Server.Heartbeat, 10*time.Second)
	if s.Policy.MaxAttempts == 0 {
		s.Policy.MaxAttempts = 3
	}
	def(&s.Policy.AttemptTimeout, 30*time.Second)
	def(&s.Policy.Deadline, 60*time.Second)
	def(&s.Policy.FirstTokenTimeout, s.Policy.AttemptTimeout)
	def(&s.Policy.StreamIdleTimeout, 30*time.Second)
	def(&s.Policy.Backoff.Base, 2*time.Second)
	if s.Policy.Backoff.Factor == 0 {
		s.Policy.Backoff.Factor = 2
	}
	def(&s.Policy.Backoff.Max, 30*time.Second)
	if s.Policy.Backoff.Jitter == "" {
		s.Policy.Backoff.Jitter = JitterNone
	}
	def(&s.Policy.RetryBudget.Window, 10*time.Second)
	if s.Policy.RetryBudget.Ratio == 0 {
		s.Policy.RetryBudget.Ratio = 0.2
	}
	if s.Policy.RetryBudget.MinRetries == 0 {
		s.Policy.RetryBudget.MinRetries = 10
	}
	if s.Log.Format == "" {
		s.Log.Format = "text"
	}
}

// Validate reports every bad value by its YAML key.
func (s *Settings) Validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as 2s, got %s", d)
		}
	}
	if s.Server.MaxBodyBytes < 1 {
		bad("server.max_body_bytes", "must be at least 1, got %d", s.Server.MaxBodyBytes)
	}
	if s.Server.MaxBodyBytes > MaxBodyCeiling {
		bad("server.max_body_bytes", "must be at most %d (the hard ceiling), got %d", MaxBodyCeiling, s.Server.MaxBodyBytes)
	}
	if s.Server.MaxMessages < 1 {
		bad("server.max_messages", "must be at least 1, got %d", s.Server.MaxMessages)
	}
	if s.Server.MaxContentChars < 1 {
		bad("server.max_content_chars", "must be at least 1, got %d", s.Server.MaxContentChars)
	}
	if h := s.Server.MaxHeaderBytes; h < 1<<10 || h > 1<<20 {
		bad("server.max_header_bytes", "must be between 1024 and 1048576, got %d", h)
	}
	if s.Server.MaxConns < 1 {
		bad("server.max_conns", "must be at least 1, got %d", s.Server.MaxConns)
	}
	if s.Server.MaxConnsPerIP < 0 {
		bad("server.max_conns_per_ip", "must not be negative (0 means no limit), got %d", s.Server.MaxConnsPerIP)
	}
	positive("server.read_timeout", s.Server.ReadTimeout)
	positive("server.write_timeout", s.Server.WriteTimeout)
	positive("server.drain_timeout", s.Server.DrainTimeout)
	positive("server.idle_timeout", s.Server.IdleTimeout)
	if s.Server.Heartbeat < 100*time.Millisecond {
		bad("server.heartbeat", "must be at least 100ms (a ping per heartbeat of silence; a shorter one floods the client), got %s", s.Server.Heartbeat)
	}
	if s.Policy.MaxAttempts < 1 {
		bad("policy.max_attempts", "must be at least 1, got %d", s.Policy.MaxAttempts)
	}
	positive("policy.attempt_timeout", s.Policy.AttemptTimeout)
	positive("policy.deadline", s.Policy.Deadline)
	positive("policy.first_token_timeout", s.Policy.FirstTokenTimeout)
	positive("policy.stream_idle_timeout", s.Policy.StreamIdleTimeout)
	positive("policy.backoff.base", s.Policy.Backoff.Base)
	positive("policy.backoff.max", s.Policy.Backoff.Max)
	if s.Policy.Backoff.Factor < 1 {
		bad("policy.backoff.factor", "must be at least 1, got %g", s.Policy.Backoff.Factor)
	}
	switch s.Policy.Backoff.Jitter {
	case JitterNone, JitterFull, JitterEqual:
	default:
		bad("policy.backoff.jitter", "%q is not valid; want none, full or equal", s.Policy.Backoff.Jitter)
	}
	positive("policy.retry_budget.window", s.Policy.RetryBudget.Window)
	if r := s.Policy.RetryBudget.Ratio; r < 0 || r > 1 {
		bad("policy.retry_budget.ratio", "must be between 0 and 1, got %g", r)
	}
	if s.Policy.RetryBudget.MinRetries < 0 {
		bad("policy.retry_budget.min_retries", "must not be negative, got %d", s.Policy.RetryBudget.MinRetries)
	}
	for _, ring := range []struct {
		name string
		keys []string
	}{{"auth.keys", s.Auth.Keys}, {"auth.admin_keys", s.Auth.AdminKeys}} {
		for i, k := range ring.keys {
			switch {
			case len(k) < 8:
				bad(fmt.Sprintf("%s[%d]", ring.name, i), "must be at least 8 characters")
			case strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }):
				// No client could send it in an Authorization header.
				bad(fmt.Sprintf("%s[%d]", ring.name, i), "contains spaces or control characters; no client can send such a key")
			}
		}
	}
	switch s.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not valid; want text or json", s.Log.Format)
	}
	return errs
}

// MaxBodyCeiling is the most the server ever reads of a body; past it the
// connection is closed (DESIGN §5).
const MaxBodyCeiling = 8 << 20
