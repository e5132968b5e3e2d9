package fsm

import (
	"fmt"
	"strings"
)

// Diagrams are rendered from the tables, never from a running machine:
// looplab/fsm's own visualiser marks the current state and orders its output
// by map iteration, while these follow the declaration order and so are
// byte-for-byte reproducible.

// Mermaid renders the machine as a Mermaid state diagram.
func (d *Definition) Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	fmt.Fprintf(&b, "    [*] --> %s\n", d.Initial)
	for _, r := range d.Rules {
		for _, from := range r.From {
			fmt.Fprintf(&b, "    %s --> %s: %s\n", from, r.To, r.Event)
		}
	}
	for _, s := range d.States {
		if s.Terminal {
			fmt.Fprintf(&b, "    %s --> [*]\n", s.State)
		}
	}
	return b.String()
}

// DOT renders the machine as a Graphviz digraph.
func (d *Definition) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", d.Kind)
	b.WriteString("    rankdir=LR;\n")
	b.WriteString("    node [shape=ellipse, fontname=\"Helvetica\"];\n")
	b.WriteString("    edge [fontname=\"Helvetica\", fontsize=10];\n")
	b.WriteString("    start [shape=point];\n")
	for _, s := range d.States {
		shape := "ellipse"
		if s.Terminal {
			shape = "doublecircle"
		}
		fmt.Fprintf(&b, "    %q [shape=%s];\n", s.State, shape)
	}
	fmt.Fprintf(&b, "    start -> %q;\n", d.Initial)
	for _, r := range d.Rules {
		for _, from := range r.From {
			fmt.Fprintf(&b, "    %q -> %q [label=%q];\n", from, r.To, r.Event)
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// DocFiles renders everything `make docs` writes into docs/, keyed by file
// name: fsm.md (both Mermaid diagrams and the tables) and one .dot file per
// machine. A test compares them with the committed files.
func DocFiles() map[string]string {
	files := map[string]string{"fsm.md": markdown()}
	for _, d := range Definitions() {
		files[string(d.Kind)+".dot"] = d.DOT()
	}
	return files
}

func markdown() string {
	var b strings.Builder
	b.WriteString("<!-- Generated from fsm/table.go by `make docs`. Do not edit: change the table and regenerate. -->\n\n")
	b.WriteString("# The state machines\n\n")
	b.WriteString("Both machines are declared once, as data, in `fsm/table.go`. The same table builds every\n")
	b.WriteString("looplab/fsm instance, renders these diagrams, checks replayed logs (`fsmctl replay`) and drives\n")
	b.WriteString("the transition tests. Graphviz versions: `docs/request.dot`, `docs/breaker.dot`\n")
	b.WriteString("(`dot -Tsvg docs/request.dot > request.svg`).\n")
	for _, d := range Definitions() {
		title := map[Kind]string{
			KindRequest: "The request machine (one per request)",
			KindBreaker: "The breaker machine (one per provider)",
		}[d.Kind]
		fmt.Fprintf(&b, "\n## %s\n\n", title)
		b.WriteString("```mermaid\n")
		b.WriteString(d.Mermaid())
		b.WriteString("```\n\n")
		b.WriteString("| state | terminal | meaning |\n|---|---|---|\n")
		for _, s := range d.States {
			term := ""
			if s.Terminal {
				term = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.State, term, s.Doc)
		}
		b.WriteString("\n| event | from | to | when |\n|---|---|---|---|\n")
		for _, r := range d.Rules {
			from := make([]string, len(r.From))
			for i, s := range r.From {
				from[i] = "`" + string(s) + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.Event, strings.Join(from, ", "), r.To, r.Doc)
		}
	}
	b.WriteString("\nAny other (state, event) pair is refused with `fsm.IllegalTransitionError` and leaves the\n")
	b.WriteString("machine where it was; terminal states accept nothing.\n")
	return b.String()
}
