package mock_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llm-gateway/gateway/mock"
)

// TestMain fails the package if any test leaves a goroutine behind: Close
// must take every hang, timeout and stream with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startMock runs a mock on a free loopback port for the test's lifetime and
// returns it with its base URL.
func startMock(t testing.TB, cfg mock.Config) (*mock.Server, string) {
	t.Helper()
	s := mock.New(cfg)
	addr, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, "http://" + addr
}

// httpClient is a client of the test's own, so its idle connections close
// with the test and goleak sees no stray goroutine.
func httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func addFault(t testing.TB, s *mock.Server, r mock.Rule) {
	t.Helper()
	if err := s.AddFault(r); err != nil {
		t.Fatal(err)
	}
}

// rawResponse is an answer read in full, for tests that look at the wire.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to url with headers given as name, value pairs.
func post(t testing.TB, c *http.Client, url, body string, headers ...string) rawResponse {
	t.Helper()
	return do(t, c, http.MethodPost, url, body, headers...)
}

func do(t testing.TB, c *http.Client, method, url, body string, headers ...string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return rawResponse{res.StatusCode, res.Header, b}
}

// decode parses a JSON body into a generic value.
func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, b)
	}
	return v
}

// path digs into a decoded JSON value: path(v, "error", "type").
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

var (
	oaHeaders = []string{"Authorization", "Bearer sk-test", "Content-Type", "application/json"}
	anHeaders = []string{"x-api-key", "sk-ant-test", "anthropic-version", "2023-06-01", "Content-Type", "application/json"}
)

func newRequest(method, url, body string, headers ...string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req, nil
}

// waitFor polls cond for up to two seconds; the mock's counters change when
// a request arrives, which a test cannot otherwise observe.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 2s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func itoa(i int) string { return strconv.Itoa(i) }
