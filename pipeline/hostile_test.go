package pipeline_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline/config"
	"github.com/llm-gateway/gateway/providers/fuzzseed"
)

// The hostile corpus: requests that are wrong at every level — JSON, the
// request's values, its size, HTTP itself, the pace of the client. Each gets
// its documented 4xx in the OpenAI error shape (or a closed connection where
// nothing else can be said), no provider is called, and clients sending valid
// requests meanwhile are all served.

const hostileReadTimeout = 500 * time.Millisecond

// hostileResult is what one hostile exchange got back.
type hostileResult struct {
	status int // 0: no answer
	header http.Header
	body   []byte
	closed bool // the connection ended without an answer
	// connClose says the answer ends the connection (Connection: close,
	// which net/http removes from the header).
	connClose bool
	err       error
}

// hostileExchange dials addr, runs write on the connection (concurrently with
// the read, since the server may answer, and close, before the whole request
// is sent) and reads one answer.
func hostileExchange(addr string, write func(net.Conn) error, limit time.Duration) hostileResult {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return hostileResult{err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(limit))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_ = write(conn)
	}()
	defer func() { _ = conn.Close(); <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return hostileResult{err: fmt.Errorf("no answer within %s", limit)}
		}
		return hostileResult{closed: true, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return hostileResult{status: resp.StatusCode, header: resp.Header, err: fmt.Errorf("reading the body: %w", err)}
	}
	return hostileResult{status: resp.StatusCode, header: resp.Header, body: body, connClose: resp.Close}
}

// send writes b at once.
func hostileSend(b string) func(net.Conn) error {
	return func(c net.Conn) error { _, err := io.WriteString(c, b); return err }
}

// post is a complete POST /v1/chat/completions with a JSON content type.
func hostilePost(body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// trickle writes head at once and then rest one byte every gap.
func hostileTrickle(head, rest string, gap time.Duration) func(net.Conn) error {
	return func(c net.Conn) error {
		if _, err := io.WriteString(c, head); err != nil {
			return err
		}
		for i := 0; i < len(rest); i++ {
			time.Sleep(gap)
			if _, err := c.Write([]byte{rest[i]}); err != nil {
				return err
			}
		}
		return nil
	}
}

// hostileCase is one entry of the corpus.
type hostileCase struct {
	name  string
	write func(net.Conn) error
	// want are the acceptable statuses; closed says a connection closed
	// without an answer is acceptable too (and the only outcome when want
	// is empty).
	want   []int
	closed bool
	// code, when set, is the error code the answer must carry.
	code string
	// rejected says the request reaches the handler and must be logged as
	// a rejected journey (received → rejected).
	rejected bool
	// closes says an answer must end the connection (Connection: close):
	// what follows such a request cannot be trusted (RFC 9112 §6.1).
	closes bool
}

func hostileMsg(body string) string { return hostilePost(body) }

const okMessages = `"messages":[{"role":"user","content":"hi"}]`

func hostileCorpus() []hostileCase {
	deep := func(n int, open, close string) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	manyMessages := func(n int, m string) string {
		return `{"model":"gpt-4","messages":[` + strings.Repeat(m+",", n-1) + m + `]}`
	}
	withContent := func(c string) string {
		return `{"model":"gpt-4","messages":[{"role":"user","content":"` + c + `"}]}`
	}
	pad := func(n int) string { return withContent(strings.Repeat("a", n)) }
	var manyHeaders strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&manyHeaders, "X-Header-%d: v\r\n", i)
	}
	huge9MiB := 9 << 20
	r := func(name, body string, code string) hostileCase {
		return hostileCase{name: name, write: hostileSend(hostileMsg(body)), want: []int{400}, code: code, rejected: true}
	}
	return []hostileCase{
		// Bad JSON.
		r("json/unterminated_object", `{"model":"gpt-4",`+okMessages, ""),
		r("json/truncated_in_a_string", `{"model":"gpt-4","messages":[{"role":"user","content":"hel`, ""),
		r("json/not_an_object", `[{"model":"gpt-4"}]`, ""),
		r("json/null", `null`, ""),
		r("json/empty_body", ``, ""),
		r("json/whitespace_only", " \r\n\t ", ""),
		r("json/trailing_garbage", `{"model":"gpt-4",`+okMessages+`} trailing`, ""),
		r("json/two_objects", `{"model":"gpt-4",`+okMessages+`}{"model":"gpt-4",`+okMessages+`}`, ""),
		r("json/single_quotes", `{'model':'gpt-4'}`, ""),
		r("json/comment", `{"model":"gpt-4", /* c */ `+okMessages+`}`, ""),
		r("json/raw_control_byte_in_a_string", withContent("a\x01b"), ""),
		r("json/raw_nul_in_a_string", withContent("a\x00b"), ""),
		// Wrong types.
		r("types/model_a_number", `{"model":42,`+okMessages+`}`, ""),
		r("types/messages_an_object", `{"model":"gpt-4","messages":{"role":"user","content":"hi"}}`, ""),
		r("types/message_a_string", `{"model":"gpt-4","messages":["hi"]}`, ""),
		r("types/content_a_number", `{"model":"gpt-4","messages":[{"role":"user","content":1}]}`, ""),
		r("types/content_part_a_string", `{"model":"gpt-4","messages":[{"role":"user","content":["hi"]}]}`, ""),
		r("types/temperature_a_string", `{"model":"gpt-4",`+okMessages+`,"temperature":"hot"}`, ""),
		r("types/stream_a_string", `{"model":"gpt-4",`+okMessages+`,"stream":"yes"}`, ""),
		r("types/stop_an_object", `{"model":"gpt-4",`+okMessages+`,"stop":{"a":1}}`, ""),
		// Values out of range, numbers that do not fit.
		r("numbers/temperature_1e400", `{"model":"gpt-4",`+okMessages+`,"temperature":1e400}`, ""),
		r("numbers/max_tokens_20_digits", `{"model":"gpt-4",`+okMessages+`,"max_tokens":99999999999999999999}`, ""),
		r("numbers/max_tokens_negative", `{"model":"gpt-4",`+okMessages+`,"max_tokens":-1}`, ""),
		r("numbers/max_tokens_fraction", `{"model":"gpt-4",`+okMessages+`,"max_tokens":1.5}`, ""),
		r("numbers/max_tokens_exponent", `{"model":"gpt-4",`+okMessages+`,"max_tokens":1e3}`, ""),
		r("numbers/n_too_large", `{"model":"gpt-4",`+okMessages+`,"n":1000000000}`, ""),
		r("numbers/seed_over_int64", `{"model":"gpt-4",`+okMessages+`,"seed":9223372036854775808}`, ""),
		r("numbers/logit_bias_1e308", `{"model":"gpt-4",`+okMessages+`,"logit_bias":{"1":1e308}}`, ""),
		r("values/role_unknown", `{"model":"gpt-4","messages":[{"role":"robot","content":"hi"}]}`, ""),
		r("values/messages_empty", `{"model":"gpt-4","messages":[]}`, ""),
		r("values/model_missing", `{`+okMessages+`}`, ""),
		r("values/model_10k_chars", `{"model":"`+strings.Repeat("m", 10000)+`",`+okMessages+`}`, ""),
		r("values/stream_options_without_stream", `{"model":"gpt-4",`+okMessages+`,"stream_options":{"include_usage":true}}`, ""),
		{name: "values/unknown_model", write: hostileSend(hostileMsg(`{"model":"gpt-99",` + okMessages + `}`)), want: []int{404}, code: "model_not_found", rejected: true},
		// Deep nesting: encoding/json stops at 10,000 levels.
		r("nesting/10k_arrays_in_an_unknown_field", `{"model":"gpt-4",`+okMessages+`,"x":`+deep(10000, "[", "]")+`}`, ""),
		r("nesting/10k_objects_in_an_unknown_field", `{"model":"gpt-4",`+okMessages+`,"x":`+strings.Repeat(`{"a":`, 10000)+"1"+strings.Repeat("}", 10000)+`}`, ""),
		r("nesting/10k_arrays_as_content", `{"model":"gpt-4","messages":[{"role":"user","content":`+deep(10000, "[", "]")+`}]}`, ""),
		r("nesting/100k_arrays", `{"model":"gpt-4",`+okMessages+`,"x":`+deep(100000, "[", "]")+`}`, ""),
		r("nesting/unbalanced_100k_opens", `{"model":"gpt-4","x":`+strings.Repeat("[", 100000), ""),
		// Invalid UTF-8.
		r("utf8/invalid_byte_in_content", withContent("caf\xe9"), ""),
		r("utf8/surrogate_half_encoded", withContent("\xed\xa0\x80"), ""),
		r("utf8/overlong_slash", withContent("\xc0\xaf"), ""),
		r("utf8/invalid_byte_in_a_key", `{"model":"gpt-4",`+okMessages+",\"\xff\":1}", ""),
		// Size.
		r("size/100k_messages_within_the_body_limit", manyMessages(100000, `{}`), ""),
		{name: "size/100k_real_messages_over_max_body_bytes", write: hostileSend(hostileMsg(manyMessages(100000, `{"role":"user","content":"hi"}`))), want: []int{413}, code: "request_too_large", rejected: true},
		{name: "size/body_just_over_max_body_bytes", write: hostileSend(hostileMsg(pad(1 << 20))), want: []int{413}, code: "request_too_large", rejected: true},
		{name: "size/body_over_the_8MiB_ceiling", write: hostileSend(hostileMsg(pad(huge9MiB))), want: []int{413}, closed: true, closes: true},
		{name: "size/chunked_body_over_the_8MiB_ceiling", write: func(c net.Conn) error {
			if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
				return err
			}
			chunk := fmt.Sprintf("%x\r\n%s\r\n", 1<<20, strings.Repeat("a", 1<<20))
			for i := 0; i < 9; i++ {
				if _, err := io.WriteString(c, chunk); err != nil {
					return err
				}
			}
			_, err := io.WriteString(c, "0\r\n\r\n")
			return err
		}, want: []int{413}, closed: true, closes: true},
		{name: "size/content_length_2^63", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 9223372036854775807\r\n\r\n{}"), want: []int{400, 413}, closed: true},
		{name: "size/content_length_20_digits", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n{}"), want: []int{400, 413}, closed: true},
		{name: "size/content_length_negative", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}"), want: []int{400}, closed: true},
		{name: "size/content_length_not_a_number", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1e3\r\n\r\n{}"), want: []int{400}, closed: true},
		// Method and content type.
		{name: "method/GET", write: hostileSend("GET /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"), want: []int{405}, code: "method_not_allowed"},
		{name: "method/PUT", write: hostileSend(strings.Replace(hostileMsg(hello), "POST", "PUT", 1)), want: []int{405}, code: "method_not_allowed"},
		{name: "method/DELETE", write: hostileSend("DELETE /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"), want: []int{405}, code: "method_not_allowed"},
		{name: "method/unknown_token", write: hostileSend("BREW /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"), want: []int{405}, code: "method_not_allowed"},
		{name: "content_type/text_plain", write: hostileSend(strings.Replace(hostileMsg(hello), "application/json", "text/plain", 1)), want: []int{415}, code: "unsupported_media_type", rejected: true},
		{name: "content_type/missing", write: hostileSend(strings.Replace(hostileMsg(hello), "Content-Type: application/json\r\n", "", 1)), want: []int{415}, code: "unsupported_media_type", rejected: true},
		{name: "content_type/form", write: hostileSend(strings.Replace(hostileMsg(hello), "application/json", "application/x-www-form-urlencoded", 1)), want: []int{415}, code: "unsupported_media_type", rejected: true},
		{name: "content_type/multipart", write: hostileSend(strings.Replace(hostileMsg(hello), "application/json", "multipart/form-data; boundary=x", 1)), want: []int{415}, code: "unsupported_media_type", rejected: true},
		{name: "content_encoding/gzip", write: hostileSend(hostilePost(hello, "Content-Encoding: gzip")), want: []int{415}, code: "unsupported_content_encoding", rejected: true},
		{name: "content_encoding/br", write: hostileSend(hostilePost(hello, "Content-Encoding: br")), want: []int{415}, code: "unsupported_content_encoding", rejected: true},
		{name: "content_type/json_lookalike", write: hostileSend(strings.Replace(hostileMsg(hello), "application/json", "application/jsonx", 1)), want: []int{415}, code: "unsupported_media_type", rejected: true},
		// Headers.
		{name: "headers/one_huge_header", write: hostileSend(hostilePost(hello, "X-Huge: "+strings.Repeat("h", 64<<10))), want: []int{431}, code: "headers_too_large", closed: true},
		{name: "headers/2000_headers", write: hostileSend(hostilePost(hello, strings.TrimSuffix(manyHeaders.String(), "\r\n"))), want: []int{431}, code: "headers_too_large", closed: true},
		{name: "headers/huge_url", write: hostileSend("POST /v1/chat/completions?" + strings.Repeat("q", 16<<10) + " HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"), want: []int{431}, closed: true},
		{name: "headers/control_byte_in_a_value", write: hostileSend(hostilePost(hello, "X-Bad: a\x01b")), want: []int{400}, closed: true},
		{name: "headers/nul_in_a_value", write: hostileSend(hostilePost(hello, "X-Bad: a\x00b")), want: []int{400}, closed: true},
		{name: "headers/line_without_a_colon", write: hostileSend(hostilePost(hello, "this is not a header")), want: []int{400}, closed: true},
		{name: "headers/space_before_the_colon", write: hostileSend(hostilePost(hello, "Content-Length : 5")), want: []int{400}, closed: true},
		{name: "headers/bare_LF_line_endings", write: hostileSend(strings.ReplaceAll("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", "\r\n", "\n")), want: []int{400}, code: "bare_lf", closed: true},
		{name: "headers/huge_invalid_request_id_on_a_bad_body", write: hostileSend(hostilePost(`{`, "X-Request-ID: "+strings.Repeat("i", 4000))), want: []int{400}, rejected: true},
		{name: "headers/content_length_twice_disagreeing", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"), want: []int{400}, closed: true, closes: true},
		{name: "headers/content_length_and_chunked", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n0\r\n\r\n"), want: []int{400}, closed: true, rejected: true, closes: true},
		{name: "headers/bad_chunk_size", write: hostileSend("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"), want: []int{400}, closed: true},
		// Not HTTP/1.x at all.
		{name: "protocol/garbage_request_line", write: hostileSend("HELLO\r\n\r\n"), want: []int{400}, closed: true},
		{name: "protocol/nul_in_the_request_line", write: hostileSend("POST /v1/chat\x00/completions HTTP/1.1\r\nHost: gw\r\n\r\n"), want: []int{400, 404}, closed: true},
		{name: "protocol/http2_preface", write: hostileSend("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), want: []int{400, 404, 405}, closed: true},
		{name: "protocol/tls_client_hello", write: hostileSend("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 64)), want: []int{400}, code: "tls_on_plain_http", closed: true},
		// Pace: slower than read_timeout, or gone halfway.
		{name: "pace/slowloris_headers", write: hostileTrickle("POST /v1/chat/completions HTTP/1.1\r\n", "Host: gw\r\nContent-Type: application/json\r\nX-Slow: "+strings.Repeat("s", 100), 100*time.Millisecond), want: []int{408}, closed: true},
		{name: "pace/slow_body", write: hostileTrickle("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n", strings.Repeat(" ", 200), 100*time.Millisecond), want: []int{408}, closed: true},
		{name: "pace/connect_and_say_nothing", write: func(net.Conn) error { return nil }, want: []int{408}, closed: true},
		// A client that sends part of its request and half-closes: the
		// gateway may still answer 400 on the open half.
		{name: "pace/half_close_halfway_through_the_body", write: func(c net.Conn) error {
			_, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+hello[:30])
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			return err
		}, want: []int{400}, closed: true},
		{name: "pace/half_close_halfway_through_the_headers", write: func(c net.Conn) error {
			_, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Ty")
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			return err
		}, want: []int{400}, closed: true},
		// Gone for good: nothing can be answered.
		{name: "pace/disconnect_halfway_through_the_body", write: func(c net.Conn) error {
			_, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+hello[:30])
			_ = c.Close()
			return err
		}, closed: true},
		{name: "pace/disconnect_halfway_through_the_headers", write: func(c net.Conn) error {
			_, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Ty")
			_ = c.Close()
			return err
		}, closed: true},
	}
}

// hostileCheck asserts that res is one of the case's acceptable outcomes, and
// that an answer is in the OpenAI error shape.
func hostileCheck(tc hostileCase, res hostileResult) error {
	if res.status == 0 {
		if res.closed && tc.closed {
			return nil
		}
		return fmt.Errorf("no answer (want %v): %v", tc.want, res.err)
	}
	if res.err != nil {
		return res.err
	}
	ok := false
	for _, s := range tc.want {
		ok = ok || res.status == s
	}
	if !ok {
		return fmt.Errorf("status %d, want one of %v (closed allowed: %t): %s", res.status, tc.want, tc.closed, hostileTrim(res.body))
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: %s", ct, hostileTrim(res.body))
	}
	var body struct {
		Error     map[string]any `json:"error"`
		RequestID *string        `json:"request_id"`
		Attempts  *int           `json:"attempts"`
	}
	if err := json.Unmarshal(res.body, &body); err != nil {
		return fmt.Errorf("the answer is not JSON: %v: %s", err, hostileTrim(res.body))
	}
	if err := relCheckErrorObject(body.Error); err != nil {
		return fmt.Errorf("%v: %s", err, hostileTrim(res.body))
	}
	if body.RequestID == nil || body.Attempts == nil || *body.Attempts != 0 {
		return fmt.Errorf("the gateway's fields are missing or attempts is not 0: %s", hostileTrim(res.body))
	}
	if tc.code != "" && body.Error["code"] != tc.code {
		return fmt.Errorf("code %v, want %s: %s", body.Error["code"], tc.code, hostileTrim(res.body))
	}
	if tc.closes && !res.connClose {
		return fmt.Errorf("the connection stays open after %d", res.status)
	}
	if res.status == 405 && res.header.Get("Allow") != "POST" {
		return fmt.Errorf("405 without Allow: POST")
	}
	if len(*body.RequestID) > 128 {
		return fmt.Errorf("a request id of %d bytes was echoed", len(*body.RequestID))
	}
	// Every answer names its request, even one fasthttp refused before the
	// handler (431, a malformed request line) or a 404/405.
	if id := *body.RequestID; id == "" || res.header.Get("X-Request-ID") != id {
		return fmt.Errorf("request_id %q, X-Request-ID header %q", id, res.header.Get("X-Request-ID"))
	}
	return nil
}

func hostileTrim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// background sends valid requests, one after another on keep-alive
// connections, until stop; every one must be served.
type hostileBackground struct {
	mu       sync.Mutex
	sent     int
	statuses map[int]int
	errs     []string
}

func runHostileBackground(addr string, workers int, stop <-chan struct{}) (*hostileBackground, *sync.WaitGroup) {
	b := &hostileBackground{statuses: map[int]int{}}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b.mu.Lock()
				b.sent++
				n := b.sent
				b.mu.Unlock()
				req, _ := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions",
					strings.NewReader(`{"model":"gpt-4","messages":[{"role":"user","content":"background `+strconv.Itoa(n)+`"}]}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Request-ID", "bg-"+strconv.Itoa(n))
				resp, err := client.Do(req)
				status := 0
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					status = resp.StatusCode
				}
				b.mu.Lock()
				b.statuses[status]++
				if err != nil || status != 200 || !strings.Contains(string(body), "background "+strconv.Itoa(n)) {
					b.errs = append(b.errs, fmt.Sprintf("bg-%d: %d %v %s", n, status, err, hostileTrim(body)))
				}
				b.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return b, &wg
}

func TestHostileInputIsRefusedWithoutAProviderCall(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		c.Pipeline.Server.ReadTimeout = hostileReadTimeout
	})
	addr := strings.TrimPrefix(g.url, "http://")
	stop := make(chan struct{})
	bg, wg := runHostileBackground(addr, 2, stop)
	stopped := false
	stopBackground := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopBackground()

	corpus := hostileCorpus()
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res := hostileExchange(addr, tc.write, 10*time.Second)
			if err := hostileCheck(tc, res); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("the answer took %s", time.Since(start))
			}
			t.Logf("observed %s: status=%d closed=%t in %s %s", tc.name, res.status, res.closed, time.Since(start).Round(time.Millisecond), hostileTrim(res.body))
		})
	}
	// A last request after the corpus: the gateway still serves.
	if a := g.post(hello); a.status != 200 {
		t.Fatalf("after the corpus: %d %s", a.status, a.raw)
	}
	stopBackground()

	bg.mu.Lock()
	defer bg.mu.Unlock()
	t.Logf("background: %d requests, statuses %v", bg.sent, bg.statuses)
	for _, e := range bg.errs {
		t.Error(e)
	}
	if bg.sent < 10 {
		t.Errorf("only %d background requests ran", bg.sent)
	}
	// Every provider call is accounted for by a valid request: the
	// background's and the last one. The hostile corpus called nobody.
	// Counted by the journal's attempts, since a valid request that the
	// loaded test machine slowed past the attempt timeout is retried.
	g.srv.Journal().Flush()
	attempts, callers := 0, map[string]bool{}
	for _, line := range strings.Split(g.log.String(), "\n") {
		if strings.Contains(line, " action=attempt ") {
			attempts++
			if f := strings.Fields(line); len(f) > 1 {
				callers[f[1]] = true // request_id=…
			}
		}
	}
	st := g.mock.Stats()
	if got := st.Requests(mock.ProviderOpenAI); got != int64(attempts) || len(callers) != bg.sent+1 {
		t.Errorf("openai was called %d times; the journal has %d attempts by %d requests, for %d valid requests", got, attempts, len(callers), bg.sent+1)
	}
	if n := st.Requests("anthropic"); n != 0 {
		t.Errorf("anthropic was called %d times", n)
	}
	for _, e := range g.mock.Log() {
		if !strings.HasPrefix(e.RequestID, "bg-") && !strings.HasPrefix(e.RequestID, "req_") {
			t.Errorf("a provider call for request %q", e.RequestID)
		}
		if e.Outcome != mock.OutcomeOK {
			t.Errorf("a provider call that was not ok: %+v", e)
		}
	}
	// The requests that reached the handler are logged as rejected
	// journeys; replay (at cleanup) checks each is legal.
	rejected := 0
	for _, tc := range corpus {
		if tc.rejected {
			rejected++
		}
	}
	if n := len(g.lines("action=rejected")); n != rejected {
		t.Errorf("%d rejected journeys logged, want %d", n, rejected)
	}
}

// hostileCapture is a net.Conn that keeps what is written to it.
type hostileCapture struct {
	net.Conn // nil: only Write and CloseWrite are used
	b        strings.Builder
}

func (c *hostileCapture) Write(p []byte) (int, error) { return c.b.Write(p) }
func (c *hostileCapture) Close() error                { return nil }

// TestWriteFuzzSeedCorpora turns the hostile corpus into seed corpora of the
// fuzz targets (testdata/fuzz/<target>/hostile-*): the raw requests for
// FuzzServeConn, their bodies for FuzzDecode and FuzzHandler. It runs only
// when asked:
//
//	GATEWAY_WRITE_CORPUS=1 go test -run TestWriteFuzzSeedCorpora ./pipeline/
func TestWriteFuzzSeedCorpora(t *testing.T) {
	if os.Getenv("GATEWAY_WRITE_CORPUS") == "" {
		t.Skip("set GATEWAY_WRITE_CORPUS=1 to rewrite the seed corpora from the hostile corpus")
	}
	for _, tc := range hostileCorpus() {
		if strings.HasPrefix(tc.name, "pace/") {
			continue // written over time, or through a real socket
		}
		c := &hostileCapture{}
		_ = tc.write(c)
		raw := c.b.String()
		if len(raw) > 24<<10 {
			continue // the size cases: the fuzzer grows inputs itself
		}
		name := "hostile-" + strings.ReplaceAll(tc.name, "/", "-")
		fuzzseed.Write(t, "FuzzServeConn", name, []byte(raw), uint64(0))
		head, body, ok := strings.Cut(raw, "\r\n\r\n")
		if !ok || !strings.HasPrefix(head, "POST /v1/chat/completions ") {
			continue
		}
		ct := ""
		for _, line := range strings.Split(head, "\r\n") {
			if v, ok := strings.CutPrefix(line, "Content-Type: "); ok {
				ct = v
			}
		}
		fuzzseed.Write(t, "FuzzDecode", name, ct, []byte(body))
		fuzzseed.Write(t, "FuzzHandler", name, "POST", "/v1/chat/completions", ct, "", []byte(body), []byte(nil), uint64(0))
	}
}
