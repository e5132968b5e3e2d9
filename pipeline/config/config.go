// Package config reads the orchestrator's one YAML file (or the embedded
// default) into the settings that package pipeline and package providers own,
// and validates it at start with messages that name the bad key.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/providers"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole file.
type Config struct {
	Pipeline  pipeline.Settings
	Providers providers.Settings
}

// file is the YAML layout: the sections of both packages side by side.
type file struct {
	Server    pipeline.ServerSettings               `yaml:"server"`
	Policy    pipeline.Policy                       `yaml:"policy"`
	Auth      pipeline.AuthSettings                 `yaml:"auth"`
	Log       pipeline.LogSettings                  `yaml:"log"`
	Breaker   providers.BreakerSettings             `yaml:"breaker"`
	Providers map[string]providers.ProviderSettings `yaml:"providers"`
	Routes    providers.Routes                      `yaml:"routes"`
}

// Load reads path, or the embedded default when path is "". getenv resolves
// the providers' API keys (os.Getenv in production).
func Load(path string, getenv func(string) string) (*Config, error) {
	data, name := defaultYAML, "embedded default"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		name = path
	}
	c, err := Parse(data, getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return c, nil
}

// Parse decodes and validates one YAML document. Unknown keys are errors.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c := &Config{
		Pipeline: pipeline.Settings{Server: f.Server, Policy: f.Policy, Auth: f.Auth, Log: f.Log},
		Providers: providers.Settings{
			Providers: f.Providers,
			Breaker:   f.Breaker,
			Routes:    f.Routes,
		},
	}
	c.Pipeline.ApplyDefaults()
	c.Providers.ApplyDefaults()
	errs := c.Pipeline.Validate()
	if err := c.Providers.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := c.Providers.ResolveKeys(getenv); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}
