package providers

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// demoProviderSettings is the providers' part of the embedded demo configuration,
// with every defaulted field left zero.
func demoProviderSettings() *Settings {
	return &Settings{
		Providers: map[string]ProviderSettings{
			"openai":    {Kind: KindOpenAI, BaseURL: "http://127.0.0.1:8001"},
			"anthropic": {Kind: KindAnthropic, BaseURL: "http://127.0.0.1:8001"},
		},
		Routes: Routes{
			"gpt-4":             {{"openai", "gpt-4"}, {"anthropic", "claude-3-5-sonnet-20241022"}},
			"gpt-4o":            {{"openai", "gpt-4o"}, {"anthropic", "claude-3-5-sonnet-20241022"}},
			"gpt-4o-mini":       {{"openai", "gpt-4o-mini"}, {"anthropic", "claude-3-5-haiku-20241022"}},
			"claude-3-5-sonnet": {{"anthropic", "claude-3-5-sonnet-20241022"}, {"openai", "gpt-4o"}},
		},
	}
}

// problems returns the messages of a Validate or ResolveKeys error, in order,
// checking that each is a *ConfigError.
func configProblems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a join of problems", err)
	}
	var out []string
	for _, e := range joined.Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("problem %q is a %T, not a *ConfigError", e, e)
		}
		out = append(out, e.Error())
	}
	if got := strings.Join(out, "\n"); got != err.Error() {
		t.Fatalf("Error() = %q, want the problems one per line", err.Error())
	}
	return out
}

func TestSettingsApplyDefaultsFillsZeroFields(t *testing.T) {
	s := demoProviderSettings()
	s.Providers["custom"] = ProviderSettings{Kind: KindOpenAI, BaseURL: "https://api.openai.com", APIKeyEnv: "MY_KEY", MaxConns: 8}
	s.ApplyDefaults()
	wantBreaker := BreakerSettings{FailureThreshold: 5, OpenTimeout: 30 * time.Second, HalfOpenMax: 1, HalfOpenSuccesses: 1}
	if s.Breaker != wantBreaker {
		t.Errorf("breaker %+v, want %+v", s.Breaker, wantBreaker)
	}
	want := map[string]ProviderSettings{
		"openai": {Kind: KindOpenAI, BaseURL: "http://127.0.0.1:8001", APIKeyEnv: "OPENAI_API_KEY",
			MaxConns: 512, MaxConnWait: time.Second, IdleConnTimeout: 30 * time.Second},
		"anthropic": {Kind: KindAnthropic, BaseURL: "http://127.0.0.1:8001", APIKeyEnv: "ANTHROPIC_API_KEY",
			AnthropicVersion: "2023-06-01", DefaultMaxTokens: 1024,
			MaxConns: 512, MaxConnWait: time.Second, IdleConnTimeout: 30 * time.Second},
		"custom": {Kind: KindOpenAI, BaseURL: "https://api.openai.com", APIKeyEnv: "MY_KEY",
			MaxConns: 8, MaxConnWait: time.Second, IdleConnTimeout: 30 * time.Second},
	}
	for name, w := range want {
		if got := s.Providers[name]; got != w {
			t.Errorf("providers.%s = %+v\nwant %+v", name, got, w)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the demo configuration does not validate:\n%v", err)
	}
}

func TestSettingsApplyDefaultsLeavesNegativesForValidate(t *testing.T) {
	s := demoProviderSettings()
	s.Breaker = BreakerSettings{FailureThreshold: -1, OpenTimeout: -time.Second}
	s.ApplyDefaults()
	got := configProblems(t, s.Validate())
	want := []string{
		"breaker.failure_threshold: must be at least 1, got -1",
		"breaker.open_timeout: must be a positive duration such as 30s, got -1s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSettingsValidateNamesEachBadKey(t *testing.T) {
	provider := func(name string, edit func(*ProviderSettings)) func(*Settings) {
		return func(s *Settings) {
			p := s.Providers[name]
			edit(&p)
			s.Providers[name] = p
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Settings) // applied after ApplyDefaults
		want string
	}{
		{"unknown kind", provider("openai", func(p *ProviderSettings) { p.Kind = "opneai" }),
			`providers.openai.kind: "opneai" is not valid; want openai or anthropic`},
		{"missing kind", provider("openai", func(p *ProviderSettings) { p.Kind = "" }),
			`providers.openai.kind: required; want openai or anthropic`},
		{"anthropic version not a date", provider("anthropic", func(p *ProviderSettings) { p.AnthropicVersion = "yesterday" }),
			`providers.anthropic.anthropic_version: must be a date like 2023-06-01, got "yesterday"`},
		{"anthropic settings on an openai provider", provider("openai", func(p *ProviderSettings) { p.DefaultMaxTokens = 100 }),
			`providers.openai: anthropic_version and default_max_tokens apply only to kind anthropic`},
		{"route to an unknown provider", func(s *Settings) { s.Routes["gpt-4"][1].Provider = "azure" },
			`routes.gpt-4[1].provider: "azure" is not a configured provider; configured: anthropic, openai`},
		{"route target without provider", func(s *Settings) { s.Routes["gpt-4"][1].Provider = "" },
			`routes.gpt-4[1].provider: required; configured: anthropic, openai`},
		{"route target without model", func(s *Settings) { s.Routes["gpt-4"][0].Model = "" },
			`routes.gpt-4[0].model: required`},
		{"route without targets", func(s *Settings) { s.Routes["gpt-4"] = nil },
			`routes.gpt-4: at least one target is required`},
		{"route repeating a target", func(s *Settings) {
			s.Routes["gpt-4"] = append(s.Routes["gpt-4"], Target{"openai", "gpt-4"})
		}, `routes.gpt-4[2]: repeats routes.gpt-4[0]; list each target once (policy.max_attempts sets the retries)`},
		{"route with an empty name", func(s *Settings) { s.Routes[""] = []Target{{"openai", "gpt-4"}} },
			`routes."": a route needs a public model name`},
		{"no providers", func(s *Settings) { s.Providers = nil; s.Routes = Routes{"m": {{"openai", "gpt-4"}}} },
			"providers: at least one provider is required\n" +
				`routes.m[0].provider: "openai" is not a configured provider; configured: none`},
		{"no routes", func(s *Settings) { s.Routes = nil },
			`routes: at least one route is required`},
		{"zero failure threshold", func(s *Settings) { s.Breaker.FailureThreshold = 0 },
			`breaker.failure_threshold: must be at least 1, got 0`},
		{"negative half_open_max", func(s *Settings) { s.Breaker.HalfOpenMax = -1 },
			`breaker.half_open_max: must be at least 1, got -1`},
		{"negative half_open_successes", func(s *Settings) { s.Breaker.HalfOpenSuccesses = -2 },
			`breaker.half_open_successes: must be at least 1, got -2`},
		{"ftp base_url", provider("anthropic", func(p *ProviderSettings) { p.BaseURL = "ftp://x" }),
			`providers.anthropic.base_url: "ftp://x" must be an http or https URL`},
		{"base_url without scheme", provider("anthropic", func(p *ProviderSettings) { p.BaseURL = "127.0.0.1:8001" }),
			`providers.anthropic.base_url: "127.0.0.1:8001" must be an http or https URL`},
		{"missing base_url", provider("openai", func(p *ProviderSettings) { p.BaseURL = "" }),
			`providers.openai.base_url: required, e.g. https://api.openai.com or http://127.0.0.1:8001`},
		{"base_url with /v1", provider("openai", func(p *ProviderSettings) { p.BaseURL = "https://api.openai.com/v1/" }),
			`providers.openai.base_url: "https://api.openai.com/v1/" must not end in /v1; the adapter adds the API path`},
		{"base_url with credentials", provider("openai", func(p *ProviderSettings) { p.BaseURL = "https://user:sk-secret@api.openai.com" }),
			`providers.openai.base_url: must not carry credentials; the key comes from api_key_env`},
		{"api_key_env holding a key", provider("openai", func(p *ProviderSettings) { p.APIKeyEnv = "sk-proj-abc.def" }),
			`providers.openai.api_key_env: must be the name of an environment variable (letters, digits and _), not the key itself`},
		{"max_conns below 1", provider("openai", func(p *ProviderSettings) { p.MaxConns = -1 }),
			`providers.openai.max_conns: must be at least 1, got -1`},
		{"negative max_conn_wait", provider("openai", func(p *ProviderSettings) { p.MaxConnWait = -time.Second }),
			`providers.openai.max_conn_wait: must not be negative, got -1s`},
		{"negative idle_conn_timeout", provider("anthropic", func(p *ProviderSettings) { p.IdleConnTimeout = -time.Millisecond }),
			`providers.anthropic.idle_conn_timeout: must not be negative, got -1ms`},
		{"default_max_tokens below 1", provider("anthropic", func(p *ProviderSettings) { p.DefaultMaxTokens = -5 }),
			`providers.anthropic.default_max_tokens: must be at least 1, got -5`},
		{"provider name with capitals", func(s *Settings) {
			s.Providers["OpenAI"] = s.Providers["openai"]
		}, `providers.OpenAI: name must be lowercase letters, digits, _ or -`},
		{"provider name with a space", func(s *Settings) {
			s.Providers["my openai"] = s.Providers["openai"]
		}, `providers."my openai": name must be lowercase letters, digits, _ or -`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := demoProviderSettings()
			s.ApplyDefaults()
			tc.edit(s)
			got := configProblems(t, s.Validate())
			if strings.Join(got, "\n") != tc.want {
				t.Fatalf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), tc.want)
			}
			if strings.Contains(strings.Join(got, "\n"), "sk-") {
				t.Fatal("a message repeats something that looks like a key")
			}
		})
	}
}

func TestSettingsValidateAllowsMoreSuccessesThanProbeSlots(t *testing.T) {
	s := demoProviderSettings()
	s.Breaker = BreakerSettings{HalfOpenMax: 1, HalfOpenSuccesses: 3}
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("half_open_successes > half_open_max refused: %v", err)
	}
}

func TestSettingsValidateReportsEveryProblemInAFixedOrder(t *testing.T) {
	want := strings.Join([]string{
		`breaker.half_open_max: must be at least 1, got -1`,
		`providers.anthropic.kind: "antropic" is not valid; want openai or anthropic`,
		`providers.anthropic.base_url: "ftp://x" must be an http or https URL`,
		`providers.openai.max_conns: must be at least 1, got -3`,
		`routes.claude-3-5-sonnet[1].provider: "azure" is not a configured provider; configured: anthropic, openai`,
		`routes.gpt-4[0].model: required`,
		`routes.gpt-4o[0].provider: "bedrock" is not a configured provider; configured: anthropic, openai`,
	}, "\n")
	for range 20 { // map order differs from run to run; the messages must not
		s := demoProviderSettings()
		s.ApplyDefaults()
		s.Breaker.HalfOpenMax = -1
		s.Providers["anthropic"] = ProviderSettings{Kind: "antropic", BaseURL: "ftp://x", MaxConns: 1}
		o := s.Providers["openai"]
		o.MaxConns = -3
		s.Providers["openai"] = o
		s.Routes["gpt-4"][0].Model = ""
		s.Routes["gpt-4o"][0].Provider = "bedrock"
		s.Routes["claude-3-5-sonnet"][1].Provider = "azure"
		if got := strings.Join(configProblems(t, s.Validate()), "\n"); got != want {
			t.Fatalf("problems:\n%s\nwant:\n%s", got, want)
		}
	}
}

func TestSettingsResolveKeys(t *testing.T) {
	const secret = "sk-test-0123456789abcdef"
	for _, tc := range []struct {
		name    string
		baseURL string
		keyEnv  string // api_key_env; "" = the default
		env     map[string]string
		wantKey string
		wantErr string
	}{
		{"key from the environment", "https://api.openai.com", "", map[string]string{"OPENAI_API_KEY": secret}, secret, ""},
		{"key from a named variable", "https://api.openai.com", "TEAM_OPENAI_KEY", map[string]string{"TEAM_OPENAI_KEY": secret, "OPENAI_API_KEY": "other"}, secret, ""},
		{"real key wins over the placeholder on loopback", "http://127.0.0.1:8001", "", map[string]string{"OPENAI_API_KEY": secret}, secret, ""},
		{"placeholder on 127.0.0.1", "http://127.0.0.1:8001", "", nil, PlaceholderAPIKey, ""},
		{"placeholder anywhere in 127/8", "http://127.9.8.7:8001", "", nil, PlaceholderAPIKey, ""},
		{"placeholder on ::1", "http://[::1]:8001", "", nil, PlaceholderAPIKey, ""},
		{"placeholder on localhost", "http://LocalHost.:8001", "", nil, PlaceholderAPIKey, ""},
		{"no key for a real provider", "https://api.openai.com", "", nil, "",
			"providers.openai: OPENAI_API_KEY is not set; export it or point base_url at a local mock"},
		{"no key for a LAN address", "http://10.0.0.5:8001", "TEAM_OPENAI_KEY", map[string]string{"OPENAI_API_KEY": secret}, "",
			"providers.openai: TEAM_OPENAI_KEY is not set; export it or point base_url at a local mock"},
		{"a host named like localhost is not loopback", "http://localhost.example.com", "", nil, "",
			"providers.openai: OPENAI_API_KEY is not set; export it or point base_url at a local mock"},
		{"key with a trailing newline", "https://api.openai.com", "", map[string]string{"OPENAI_API_KEY": secret + "\n"}, "",
			"providers.openai: OPENAI_API_KEY contains spaces or control characters; set it to the bare key"},
		{"key with a space", "http://127.0.0.1:8001", "", map[string]string{"OPENAI_API_KEY": "sk-test 0123"}, "",
			"providers.openai: OPENAI_API_KEY contains spaces or control characters; set it to the bare key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Settings{Providers: map[string]ProviderSettings{
				"openai": {Kind: KindOpenAI, BaseURL: tc.baseURL, APIKeyEnv: tc.keyEnv},
			}}
			s.ApplyDefaults()
			err := s.ResolveKeys(func(name string) string { return tc.env[name] })
			got := s.Providers["openai"].APIKey
			if tc.wantErr == "" {
				if err != nil || got != tc.wantKey {
					t.Fatalf("key %q, error %v; want key %q", got, err, tc.wantKey)
				}
				return
			}
			msgs := configProblems(t, err)
			if len(msgs) != 1 || msgs[0] != tc.wantErr {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if got != "" {
				t.Fatalf("a failed resolution set the key to %q", got)
			}
			if strings.Contains(err.Error(), "sk-test") || strings.Contains(err.Error(), "0123") {
				t.Fatalf("the error %q contains the key", err)
			}
		})
	}
}

func TestSettingsResolveKeysReportsEveryProviderAndReadsTheEnvironment(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
	s := &Settings{Providers: map[string]ProviderSettings{
		"openai":    {Kind: KindOpenAI, BaseURL: "https://api.openai.com"},
		"openai-eu": {Kind: KindOpenAI, BaseURL: "https://eu.api.openai.com"},
		"anthropic": {Kind: KindAnthropic, BaseURL: "https://api.anthropic.com"},
	}}
	s.ApplyDefaults()
	err := s.ResolveKeys(nil)
	want := "providers.openai: OPENAI_API_KEY is not set; export it or point base_url at a local mock\n" +
		"providers.openai-eu: OPENAI_API_KEY is not set; export it or point base_url at a local mock"
	if got := strings.Join(configProblems(t, err), "\n"); got != want {
		t.Fatalf("problems:\n%s\nwant:\n%s", got, want)
	}
	if got := s.Providers["anthropic"].APIKey; got != "sk-ant-secret" {
		t.Fatalf("anthropic key %q", got)
	}
}
