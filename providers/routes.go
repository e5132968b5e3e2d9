package providers

import "sort"

// Target is one place a public model can be served: a provider and that
// provider's own name for the model.
type Target struct {
	Provider string `yaml:"provider"`
	Model    string `yaml:"model"`
}

// Routes maps a public model name to its targets, in the order they are tried.
// It is read-only after configuration and safe for concurrent use.
type Routes map[string][]Target

// Lookup returns the targets of a public model.
func (r Routes) Lookup(model string) ([]Target, bool) {
	t, ok := r[model]
	return t, ok && len(t) > 0
}

// Models returns the public model names, sorted.
func (r Routes) Models() []string {
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
