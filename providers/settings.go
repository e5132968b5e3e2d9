package providers

import "time"

// Settings is the providers' part of the configuration file: the upstream
// APIs, their breakers and the routes. Zero values mean the documented
// defaults (see ApplyDefaults); Validate reports every mistake by its YAML key.
type Settings struct {
	// Providers names each upstream API; the names are what routes refer to.
	Providers map[string]ProviderSettings `yaml:"providers"`
	// Breaker configures every provider's circuit breaker.
	Breaker BreakerSettings `yaml:"breaker"`
	// Routes maps each public model name to its ordered targets.
	Routes Routes `yaml:"routes"`
}

// ProviderSettings configures one upstream API.
type ProviderSettings struct {
	// Kind is the wire format: "openai" or "anthropic".
	Kind string `yaml:"kind"`
	// BaseURL is the API's root, without the /v1 path, e.g.
	// http://127.0.0.1:8001 for the mock.
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv names the environment variable that holds the key. Default
	// OPENAI_API_KEY or ANTHROPIC_API_KEY by kind. The key itself never
	// appears in the configuration, a log line or an error.
	APIKeyEnv string `yaml:"api_key_env"`
	// AnthropicVersion is the anthropic-version header. Default 2023-06-01.
	AnthropicVersion string `yaml:"anthropic_version"`
	// DefaultMaxTokens is Anthropic's required max_tokens when the client
	// gives neither max_tokens nor max_completion_tokens. Default 1024.
	DefaultMaxTokens int `yaml:"default_max_tokens"`
	// MaxConns caps the connections to this provider. Default 512.
	MaxConns int `yaml:"max_conns"`
	// MaxConnWait is how long a call waits for a free connection when
	// MaxConns are busy before failing. Default 1s.
	MaxConnWait time.Duration `yaml:"max_conn_wait"`
	// IdleConnTimeout closes keep-alive connections idle this long; keep it
	// below the upstream's own keep-alive timeout. Default 30s.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`

	// APIKey is resolved from APIKeyEnv at load time; never logged.
	APIKey string `yaml:"-"`
}

// BreakerSettings configures a circuit breaker (DESIGN §3).
type BreakerSettings struct {
	// FailureThreshold consecutive failures trip the breaker. Default 5.
	FailureThreshold int `yaml:"failure_threshold"`
	// OpenTimeout is how long an open breaker rejects calls before it admits
	// a probe. Default 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenMax is how many probe calls may be in flight at once. Default 1.
	HalfOpenMax int `yaml:"half_open_max"`
	// HalfOpenSuccesses is how many probes must succeed to close. Default 1.
	HalfOpenSuccesses int `yaml:"half_open_successes"`
}

// The defaults of the settings above.
const (
	DefaultAnthropicVersion  = "2023-06-01"
	DefaultMaxTokens         = 1024
	DefaultMaxConns          = 512
	DefaultMaxConnWait       = time.Second
	DefaultIdleConnTimeout   = 30 * time.Second
	DefaultFailureThreshold  = 5
	DefaultOpenTimeout       = 30 * time.Second
	DefaultHalfOpenMax       = 1
	DefaultHalfOpenSuccesses = 1
)

// Provider kinds.
const (
	KindOpenAI    = "openai"
	KindAnthropic = "anthropic"
)
