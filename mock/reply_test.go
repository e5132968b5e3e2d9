package mock

import (
	"strings"
	"testing"
)

func TestComposeDerivesTheReplyFromThePrompt(t *testing.T) {
	tests := []struct {
		name       string
		p          prompt
		wantText   string
		wantFinish finish
		wantSeq    string
		wantOut    int
	}{
		{"plain", prompt{lastUser: "hello world"}, "Mock reply to: hello world", finishNatural, "", 5},
		{"max tokens cuts at a word", prompt{lastUser: "a b c", maxTokens: 4}, "Mock reply to: a", finishLength, "", 4},
		{"max tokens equal to the length is natural", prompt{lastUser: "a b", maxTokens: 5}, "Mock reply to: a b", finishNatural, "", 5},
		{"earliest stop sequence wins", prompt{lastUser: "x STOP y END", stops: []string{"END", "STOP"}}, "Mock reply to: x ", finishStop, "STOP", 4},
		{"stop beyond max tokens is length", prompt{lastUser: "a b STOP", maxTokens: 4, stops: []string{"STOP"}}, "Mock reply to: a", finishLength, "", 4},
		{"stop inside the limit beats length", prompt{lastUser: "a STOP b c", maxTokens: 5, stops: []string{"STOP"}}, "Mock reply to: a ", finishStop, "STOP", 4},
		{"stop at the very start still counts one token", prompt{lastUser: "x", stops: []string{"Mock"}}, "", finishStop, "Mock", 1},
		{"refuse beats tool", prompt{lastUser: "[tool] [refuse]", toolName: "f", userIsLast: true}, "Mock refusal.", finishRefusal, "", 2},
		{"tool needs tools offered", prompt{lastUser: "[tool]", userIsLast: true}, "Mock reply to: [tool]", finishNatural, "", 4},
		{"tool needs the user turn to be last", prompt{lastUser: "[tool]", toolName: "f"}, "Mock reply to: [tool]", finishNatural, "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := compose(&tt.p)
			if r.text != tt.wantText || r.finish != tt.wantFinish || r.stopSequence != tt.wantSeq || r.outputTokens != tt.wantOut {
				t.Errorf("got %q finish %d seq %q out %d; want %q %d %q %d", r.text, r.finish, r.stopSequence, r.outputTokens, tt.wantText, tt.wantFinish, tt.wantSeq, tt.wantOut)
			}
			if r.inputTokens != 1 {
				t.Errorf("input tokens = %d, want the minimum of 1", r.inputTokens)
			}
		})
	}
	r := compose(&prompt{lastUser: `say "hi" [tool]`, toolName: "lookup", userIsLast: true})
	if r.finish != finishTool || r.toolName != "lookup" || r.toolArgs != `{"query":"say \"hi\" [tool]"}` {
		t.Errorf("tool reply = %+v", r)
	}
}

func TestPiecesConcatenateToTheText(t *testing.T) {
	for _, text := range []string{"", "one", "Mock reply to: a  b\n c ", "  lead", "ünï cödé ✓"} {
		p := pieces(text)
		if strings.Join(p, "") != text {
			t.Errorf("pieces(%q) = %q", text, p)
		}
		if countWords(text) > 0 && len(p) != countWords(text) {
			t.Errorf("pieces(%q) has %d pieces for %d words", text, len(p), countWords(text))
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\back`, "ctl\x00\x1f\n\t\r", "ünï ✓", "bad\xffutf8", "sep\u2028\u2029"} {
		got := string(appendString(nil, s))
		want := mustJSON(s)
		if got != want {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}
