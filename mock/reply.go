package mock

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The reply is a pure function of the request, so a test can tell which
// request was answered and what the gateway must have sent.

const (
	replyPrefix   = "Mock reply to: "
	refusalText   = "Mock refusal."
	toolTrigger   = "[tool]"
	refuseTrigger = "[refuse]"
)

// finish is why a reply ended, in neutral terms; each dialect names it.
type finish uint8

const (
	finishNatural finish = iota // OpenAI stop, Anthropic end_turn
	finishLength                // OpenAI length, Anthropic max_tokens
	finishStop                  // OpenAI stop, Anthropic stop_sequence
	finishTool                  // OpenAI tool_calls, Anthropic tool_use
	finishRefusal               // OpenAI content_filter, Anthropic refusal
)

// prompt is what both dialects reduce a request to before answering.
type prompt struct {
	lastUser    string   // the text parts of the last user message, joined by one space
	userIsLast  bool     // the conversation ends with a user turn that has text
	promptWords int      // words of every text in the conversation, system included
	maxTokens   int      // 0: no limit
	stops       []string // stop sequences, in request order
	toolName    string   // the tool a [tool] trigger calls; empty: no tools offered
	prefill     string   // Anthropic: the final assistant message, which the reply continues
}

// reply is the answer both dialects render.
type reply struct {
	text         string // the visible text; empty for a tool call
	finish       finish
	stopSequence string // the stop sequence that ended it, for finishStop
	toolName     string
	toolArgs     string // a JSON object, for finishTool
	inputTokens  int
	outputTokens int
}

// compose derives the reply from the prompt.
//
//   - "[refuse]" in the last user message: a refusal, whatever else is asked.
//   - "[tool]" in it, tools offered and the conversation ending on that user
//     turn (so a tool result does not trigger another call): a call of the
//     first (or the chosen) tool with {"query": <last user text>}.
//   - Otherwise "Mock reply to: <last user text>" (for an Anthropic prefill
//     that begins it, only the rest after the prefill), cut at the earliest stop
//     sequence that is complete within the first maxTokens words, or else
//     truncated to maxTokens words.
func compose(p *prompt) reply {
	r := reply{inputTokens: max(p.promptWords, 1)}
	switch {
	case strings.Contains(p.lastUser, refuseTrigger):
		r.text, r.finish = refusalText, finishRefusal
	case p.toolName != "" && p.userIsLast && strings.Contains(p.lastUser, toolTrigger):
		r.finish = finishTool
		r.toolName = p.toolName
		args := make([]byte, 0, len(p.lastUser)+16)
		args = append(args, `{"query":`...)
		args = appendString(args, p.lastUser)
		r.toolArgs = string(append(args, '}'))
		r.outputTokens = max(countWords(r.toolArgs), 1)
		return r
	default:
		// A prefill is continued, as Anthropic does: the answer is the
		// rest of the reply after the text the assistant turn already has.
		full := replyPrefix + p.lastUser
		if p.prefill != "" && strings.HasPrefix(full, p.prefill) {
			full = full[len(p.prefill):]
		}
		r.text, r.finish, r.stopSequence = limit(full, p.maxTokens, p.stops)
	}
	r.outputTokens = max(countWords(r.text), 1)
	return r
}

// limit applies max tokens (words) and stop sequences to the full text.
func limit(full string, maxWords int, stops []string) (string, finish, string) {
	end := len(full)
	truncated := false
	if maxWords > 0 {
		if e, ok := endOfWord(full, maxWords); ok {
			end, truncated = e, true
		}
	}
	at, seq := -1, ""
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(full, s); i >= 0 && (at < 0 || i < at) {
			at, seq = i, s
		}
	}
	// A stop sequence counts only if it was generated before the limit hit.
	if at >= 0 && at+len(seq) <= end {
		return full[:at], finishStop, seq
	}
	if truncated {
		return full[:end], finishLength, ""
	}
	return full, finishNatural, ""
}

// endOfWord returns the byte offset just past the n-th word of s, and false
// when s has n words or fewer.
func endOfWord(s string, n int) (int, bool) {
	words := 0
	inWord := false
	for i, r := range s {
		space := unicode.IsSpace(r)
		if inWord && space {
			words++
			if words == n {
				return i, hasWordAfter(s[i:])
			}
		}
		inWord = !space
	}
	return len(s), false
}

func hasWordAfter(s string) bool { return strings.TrimSpace(s) != "" }

// countWords is the mock's tokenizer: whitespace-separated words.
func countWords(s string) int {
	n := 0
	inWord := false
	for i := 0; i < len(s); {
		c := s[i]
		var space bool
		if c < utf8.RuneSelf {
			space = c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
			i++
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			space = unicode.IsSpace(r)
			i += size
		}
		if !space && !inWord {
			n++
		}
		inWord = !space
	}
	return n
}

// pieces splits text into stream deltas, one per word, each carrying the
// whitespace before it, so the deltas concatenate to exactly the text.
func pieces(text string) []string {
	out := make([]string, 0, countWords(text)+1)
	start := 0
	inWord := false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if inWord && space {
			out = append(out, text[start:i])
			start = i
		}
		inWord = !space
	}
	switch {
	case start == len(text):
	case !inWord && len(out) > 0:
		// Trailing whitespace rides on the last word, not a delta of its own.
		// The last piece ends at start, so it begins at start-len(last).
		last := out[len(out)-1]
		out[len(out)-1] = text[start-len(last):]
	default:
		out = append(out, text[start:])
	}
	return out
}

// halves splits s in two at a rune boundary, for streaming tool arguments in
// more than one delta.
func halves(s string) []string {
	mid := len(s) / 2
	for mid > 0 && !utf8.RuneStart(s[mid]) {
		mid--
	}
	if mid == 0 {
		return []string{s}
	}
	return []string{s[:mid], s[mid:]}
}
