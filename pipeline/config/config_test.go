package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestEmbeddedDefaultIsTheDemoConfiguration(t *testing.T) {
	c, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pipeline.Policy
	if p.MaxAttempts != 3 || p.AttemptTimeout != time.Second || p.Deadline != 60*time.Second ||
		p.Backoff.Base != 2*time.Second || p.Backoff.Factor != 2 || p.Backoff.Max != 30*time.Second || p.Backoff.Jitter != "none" {
		t.Fatalf("policy %+v", p)
	}
	if b := c.Providers.Breaker; b.FailureThreshold != 5 || b.OpenTimeout != 30*time.Second || b.HalfOpenMax != 1 {
		t.Fatalf("breaker %+v", b)
	}
	for _, model := range []string{"gpt-4", "gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"} {
		if targets, ok := c.Providers.Routes.Lookup(model); !ok || len(targets) != 2 {
			t.Fatalf("route %s: %+v", model, targets)
		}
	}
	for name, ps := range c.Providers.Providers {
		if ps.BaseURL != "http://127.0.0.1:8001" || ps.APIKey == "" {
			t.Fatalf("%s: %+v", name, ps)
		}
	}
}

func TestBadFilesAreRefusedNamingTheKey(t *testing.T) {
	base := string(DefaultYAML())
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty"},
		{"unknown key", strings.Replace(base, "max_attempts: 3", "max_attempts: 3\n  max_atempts: 4", 1), "max_atempts"},
		{"not yaml", "policy: [", "did not find"},
		{"bad jitter", strings.Replace(base, "jitter: none", "jitter: some", 1), "policy.backoff.jitter"},
		{"zero attempts", strings.Replace(base, "max_attempts: 3", "max_attempts: -1", 1), "policy.max_attempts"},
		{"bad duration", strings.Replace(base, "deadline: 60s", "deadline: soon", 1), "soon"},
		{"unknown provider in route", strings.Replace(base, "- {provider: openai, model: gpt-4}", "- {provider: azure, model: gpt-4}", 1), "azure"},
		{"bad log format", strings.Replace(base, "format: text", "format: xml", 1), "log.format"},
		{"gateway key with a space", strings.Replace(base, "  keys: []", "  keys: [\"abc defgh\"]", 1), "auth.keys[0]: contains spaces"},
		{"fractional count", strings.Replace(base, "max_attempts: 3", "max_attempts: 2.7", 1), "policy.max_attempts: must be a whole number, got 2.7"},
		{"fractional size", strings.Replace(base, "max_body_bytes: 1048576", "max_body_bytes: 1.5", 1), "server.max_body_bytes: must be a whole number"},
		{"heartbeat too short", strings.Replace(base, "server:\n", "server:\n  heartbeat: 10ms\n", 1), "server.heartbeat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestARealProviderWithoutItsKeyFailsAtStart(t *testing.T) {
	yml := strings.ReplaceAll(string(DefaultYAML()), "http://127.0.0.1:8001", "https://api.example.com")
	_, err := Parse([]byte(yml), noEnv)
	if err == nil || !strings.Contains(err.Error(), "OPENAI_API_KEY") {
		t.Fatalf("got %v", err)
	}
	c, err := Parse([]byte(yml), func(k string) string { return "sk-live-" + k })
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers.Providers["openai"].APIKey != "sk-live-OPENAI_API_KEY" {
		t.Fatal("the key was not read from the environment")
	}
}

func TestLoadReadsAFileAndNamesItInErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(path, []byte("policy:\n  max_attempts: 0\n  bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, noEnv)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("got %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), noEnv); err == nil {
		t.Fatal("a missing file must fail")
	}
}
