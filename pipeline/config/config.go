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
	"reflect"
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
	// yaml.v3 decodes 1.5 into an int field as 1, without a word: a count,
	// a size or a duration given as a fraction is refused instead.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		if err := wholeNumbers(&root, reflect.TypeOf(f), ""); err != nil {
			return nil, err
		}
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

// wholeNumbers finds a fractional number given for an integer field (counts,
// sizes, durations), walking the YAML beside the type it decodes into.
func wholeNumbers(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := wholeNumbers(c, t, path); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			p := key
			if path != "" {
				p = path + "." + key
			}
			switch t.Kind() {
			case reflect.Map:
				if err := wholeNumbers(val, t.Elem(), p); err != nil {
					return err
				}
			case reflect.Struct:
				if ft, ok := fieldByYAMLName(t, key); ok {
					if err := wholeNumbers(val, ft, p); err != nil {
						return err
					}
				}
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				if err := wholeNumbers(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case yaml.ScalarNode:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if n.Tag == "!!float" {
				return fmt.Errorf("line %d: %s: must be a whole number, got %s", n.Line, path, n.Value)
			}
		}
	}
	return nil
}

// fieldByYAMLName is the type of t's field named key in YAML, looking into
// inlined structs.
func fieldByYAMLName(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			if ft, ok := fieldByYAMLName(f.Type, key); ok {
				return ft, true
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f.Type, true
		}
	}
	return nil, false
}
