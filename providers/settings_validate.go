package providers

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The configuration is read in three steps: ApplyDefaults, Validate, then
// ResolveKeys. Every message names the YAML key it is about and says what
// would be valid; none ever contains a key's value.

// PlaceholderAPIKey is the key sent to a provider on a loopback address when
// its environment variable is empty: the mock only checks that a key is
// present, so the demo runs without real keys.
const PlaceholderAPIKey = "mock-key"

// ConfigError is one problem of the configuration file, located by its YAML
// key path, e.g. routes.gpt-4[1].provider.
type ConfigError struct {
	Key     string
	Problem string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Problem }

// WithDefaults returns s with each zero field set to its default.
func (s BreakerSettings) WithDefaults() BreakerSettings {
	if s.FailureThreshold == 0 {
		s.FailureThreshold = DefaultFailureThreshold
	}
	if s.OpenTimeout == 0 {
		s.OpenTimeout = DefaultOpenTimeout
	}
	if s.HalfOpenMax == 0 {
		s.HalfOpenMax = DefaultHalfOpenMax
	}
	if s.HalfOpenSuccesses == 0 {
		s.HalfOpenSuccesses = DefaultHalfOpenSuccesses
	}
	return s
}

// positive is WithDefaults for NewBreaker, which must work whatever it is
// given: negative fields take their defaults too.
func (s BreakerSettings) positive() BreakerSettings {
	s.FailureThreshold = max(s.FailureThreshold, 0)
	s.OpenTimeout = max(s.OpenTimeout, 0)
	s.HalfOpenMax = max(s.HalfOpenMax, 0)
	s.HalfOpenSuccesses = max(s.HalfOpenSuccesses, 0)
	return s.WithDefaults()
}

// WithDefaults returns p with each zero field set to its default. The
// Anthropic-only fields are filled only for kind anthropic, and api_key_env
// only for a known kind.
func (p ProviderSettings) WithDefaults() ProviderSettings {
	if p.APIKeyEnv == "" {
		switch p.Kind {
		case KindOpenAI:
			p.APIKeyEnv = "OPENAI_API_KEY"
		case KindAnthropic:
			p.APIKeyEnv = "ANTHROPIC_API_KEY"
		}
	}
	if p.Kind == KindAnthropic {
		if p.AnthropicVersion == "" {
			p.AnthropicVersion = DefaultAnthropicVersion
		}
		if p.DefaultMaxTokens == 0 {
			p.DefaultMaxTokens = DefaultMaxTokens
		}
	}
	if p.MaxConns == 0 {
		p.MaxConns = DefaultMaxConns
	}
	if p.MaxConnWait == 0 {
		p.MaxConnWait = DefaultMaxConnWait
	}
	if p.IdleConnTimeout == 0 {
		p.IdleConnTimeout = DefaultIdleConnTimeout
	}
	return p
}

// ApplyDefaults fills every zero field with its default. Negative values are
// left for Validate to report.
func (s *Settings) ApplyDefaults() {
	s.Breaker = s.Breaker.WithDefaults()
	for name, p := range s.Providers {
		s.Providers[name] = p.WithDefaults()
	}
}

var (
	providerNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// anthropicVersionRE is the form of the anthropic-version header.
	anthropicVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// Validate reports every problem of s, joined with errors.Join, each a
// *ConfigError naming its YAML key; nil when s is good. Call ApplyDefaults
// first: Validate checks values as they will be used, so a zero it sees is
// reported. Messages come in a fixed order: breaker, then providers and
// routes sorted by name.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	atLeast1 := func(key string, v int) {
		if v < 1 {
			bad(key, "must be at least 1, got %d", v)
		}
	}
	notNegative := func(key string, d time.Duration) {
		if d < 0 {
			bad(key, "must not be negative, got %s", d)
		}
	}

	atLeast1("breaker.failure_threshold", s.Breaker.FailureThreshold)
	if s.Breaker.OpenTimeout <= 0 {
		bad("breaker.open_timeout", "must be a positive duration such as 30s, got %s", s.Breaker.OpenTimeout)
	}
	atLeast1("breaker.half_open_max", s.Breaker.HalfOpenMax)
	// half_open_successes may exceed half_open_max: the probes then run
	// one after another.
	atLeast1("breaker.half_open_successes", s.Breaker.HalfOpenSuccesses)

	names := sortedKeys(s.Providers)
	if len(names) == 0 {
		bad("providers", "at least one provider is required")
	}
	for _, name := range names {
		p := s.Providers[name]
		key := "providers." + keyName(name)
		if !providerNameRE.MatchString(name) {
			bad(key, "name must be lowercase letters, digits, _ or -")
		}
		switch p.Kind {
		case KindOpenAI, KindAnthropic:
		case "":
			bad(key+".kind", "required; want openai or anthropic")
		default:
			bad(key+".kind", "%q is not valid; want openai or anthropic", p.Kind)
		}
		if problem := checkBaseURL(p.BaseURL); problem != "" {
			bad(key+".base_url", "%s", problem)
		}
		switch {
		case p.APIKeyEnv == "" && (p.Kind == KindOpenAI || p.Kind == KindAnthropic):
			bad(key+".api_key_env", "required: the name of the environment variable that holds the key")
		case p.APIKeyEnv != "" && !envNameRE.MatchString(p.APIKeyEnv):
			// Not quoted: a key pasted here by mistake must not reach a log.
			bad(key+".api_key_env", "must be the name of an environment variable (letters, digits and _), not the key itself")
		}
		switch {
		case p.Kind == KindAnthropic:
			if !anthropicVersionRE.MatchString(p.AnthropicVersion) {
				// The anthropic-version header is a date; anything else
				// fails every call with a 400.
				bad(key+".anthropic_version", "must be a date like %s, got %q", DefaultAnthropicVersion, p.AnthropicVersion)
			}
			atLeast1(key+".default_max_tokens", p.DefaultMaxTokens)
		case p.AnthropicVersion != "" || p.DefaultMaxTokens != 0:
			// A setting that does nothing must not pass for one that does.
			bad(key, "anthropic_version and default_max_tokens apply only to kind anthropic")
		}
		atLeast1(key+".max_conns", p.MaxConns)
		notNegative(key+".max_conn_wait", p.MaxConnWait)
		notNegative(key+".idle_conn_timeout", p.IdleConnTimeout)
	}

	models := s.Routes.Models()
	if len(models) == 0 {
		bad("routes", "at least one route is required")
	}
	configured := strings.Join(names, ", ")
	if configured == "" {
		configured = "none"
	}
	for _, model := range models {
		key := "routes." + keyName(model)
		targets := s.Routes[model]
		if strings.TrimSpace(model) == "" {
			bad(key, "a route needs a public model name")
		}
		if len(targets) == 0 {
			bad(key, "at least one target is required")
		}
		seen := make(map[Target]int, len(targets))
		for i, t := range targets {
			tkey := fmt.Sprintf("%s[%d]", key, i)
			switch _, ok := s.Providers[t.Provider]; {
			case t.Provider == "":
				bad(tkey+".provider", "required; configured: %s", configured)
			case !ok:
				bad(tkey+".provider", "%q is not a configured provider; configured: %s", t.Provider, configured)
			}
			if strings.TrimSpace(t.Model) == "" {
				bad(tkey+".model", "required")
			}
			if j, dup := seen[t]; dup && t.Provider != "" && t.Model != "" {
				bad(tkey, "repeats %s[%d]; list each target once (policy.max_attempts sets the retries)", key, j)
			} else if !dup {
				seen[t] = i
			}
		}
	}
	return errors.Join(errs...)
}

// checkBaseURL returns what is wrong with a provider's base_url, or "".
func checkBaseURL(raw string) string {
	if raw == "" {
		return "required, e.g. https://api.openai.com or http://127.0.0.1:8001"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q must be an http or https URL", raw)
	}
	if u.User != nil {
		return "must not carry credentials; the key comes from api_key_env"
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Sprintf("%q must not have a query or fragment", raw)
	}
	if p := strings.TrimSuffix(u.Path, "/"); strings.HasSuffix(p, "/v1") {
		return fmt.Sprintf("%q must not end in /v1; the adapter adds the API path", raw)
	}
	return ""
}

// ResolveKeys sets each provider's APIKey from the environment variable its
// api_key_env names (getenv nil means os.Getenv). When the variable is empty
// and base_url is a loopback address (127.0.0.0/8, ::1, localhost), the
// provider gets PlaceholderAPIKey, as the mock only checks that a key is
// present; otherwise it is an error saying which variable to set. Call it
// after Validate. No message contains a key.
func (s *Settings) ResolveKeys(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	for _, name := range sortedKeys(s.Providers) {
		p := s.Providers[name]
		key := "providers." + keyName(name)
		if p.APIKeyEnv == "" {
			errs = append(errs, &ConfigError{Key: key + ".api_key_env", Problem: "required: the name of the environment variable that holds the key"})
			continue
		}
		v := getenv(p.APIKeyEnv)
		switch {
		case v == "" && isLoopback(p.BaseURL):
			p.APIKey = PlaceholderAPIKey
		case v == "":
			errs = append(errs, &ConfigError{Key: key, Problem: p.APIKeyEnv + " is not set; export it or point base_url at a local mock"})
			continue
		case strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			// A stray newline would otherwise end up inside an HTTP header.
			errs = append(errs, &ConfigError{Key: key, Problem: p.APIKeyEnv + " contains spaces or control characters; set it to the bare key"})
			continue
		default:
			p.APIKey = v
		}
		s.Providers[name] = p
	}
	return errors.Join(errs...)
}

// isLoopback reports whether a base URL points at this machine.
func isLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// keyName renders a map key inside a YAML key path, quoted when it would
// otherwise be unreadable.
func keyName(name string) string {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == '"' || r == '[' || r == ']' || r == 0x7f }) {
		return fmt.Sprintf("%q", name)
	}
	return name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
