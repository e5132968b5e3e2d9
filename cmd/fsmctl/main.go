// Command fsmctl works with the gateway's state machines: it renders their
// diagrams from the transition tables and writes the generated docs.
//
//	fsmctl diagram [-machine request|breaker] [-format mermaid|dot]
//	fsmctl docs [-out docs]
//	fsmctl replay [--request-id ID] [--journeys] [--allow-incomplete] [--json] [--quiet] FILE|-
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/llm-gateway/gateway/fsm"
)

const usage = `usage:
  fsmctl diagram [-machine request|breaker] [-format mermaid|dot]
  fsmctl docs [-out DIR]
  fsmctl replay [--request-id ID] [--journeys] [--allow-incomplete] [--json] [--quiet] FILE|-
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "diagram":
		return diagram(args[1:], stdout, stderr)
	case "docs":
		return docs(args[1:], stdout, stderr)
	case "replay":
		return replay(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fsmctl: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func diagram(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagram", flag.ContinueOnError)
	fs.SetOutput(stderr)
	machine := fs.String("machine", "request", "which machine: request or breaker")
	format := fs.String("format", "mermaid", "output format: mermaid or dot")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fsmctl diagram: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var def *fsm.Definition
	for _, d := range fsm.Definitions() {
		if string(d.Kind) == *machine {
			def = d
		}
	}
	if def == nil {
		fmt.Fprintf(stderr, "fsmctl diagram: unknown machine %q (want request or breaker)\n", *machine)
		return 2
	}
	switch *format {
	case "mermaid":
		fmt.Fprint(stdout, def.Mermaid())
	case "dot":
		fmt.Fprint(stdout, def.DOT())
	default:
		fmt.Fprintf(stderr, "fsmctl diagram: unknown format %q (want mermaid or dot)\n", *format)
		return 2
	}
	return 0
}

func docs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("docs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "docs", "directory to write the generated files into")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fsmctl docs: unexpected argument %q (the directory is -out DIR)\n", fs.Arg(0))
		return 2
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "fsmctl docs: %v\n", err)
		return 1
	}
	files := fsm.DocFiles()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(*out, name)
		if err := os.WriteFile(path, []byte(files[name]), 0o644); err != nil {
			fmt.Fprintf(stderr, "fsmctl docs: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	return 0
}
