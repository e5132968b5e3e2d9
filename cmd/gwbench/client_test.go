package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

// clock returns 1 s, 2 s, … after the epoch on each call, so a test can
// tell which read set FirstBody.
func clock() func() time.Time {
	var n int
	return func() time.Time {
		n++
		return time.Unix(int64(n), 0)
	}
}

func TestReadResponseDiscardsAContentLengthBody(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello" +
		"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"
	br := bufio.NewReader(strings.NewReader(raw))
	r, err := readResponse(br, clock())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.Close || r.FirstBody.IsZero() {
		t.Errorf("first = %+v, want 200, kept alive, a first-body time", r)
	}
	r, err = readResponse(br, clock())
	if err != nil || r.Status != 400 {
		t.Fatalf("second = %+v, %v; want 400 (the first body was not consumed exactly)", r, err)
	}
}

func TestReadResponseTimesTheFirstChunkOfAStream(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"d\r\ndata: hello\n\n\r\n" +
		"e\r\ndata: [DONE]\n\n\r\n" +
		"0\r\n\r\n" +
		"HTTP/1.1 204 No Content\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(raw))
	r, err := readResponse(br, clock())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.FirstBody != time.Unix(1, 0) {
		t.Errorf("stream = %+v, want 200 with FirstBody at the first chunk (1 s)", r)
	}
	if r, err = readResponse(br, clock()); err != nil || r.Status != 204 || !r.FirstBody.IsZero() {
		t.Errorf("after the stream = %+v, %v; want 204 with no body", r, err)
	}
}

func TestReadResponseHonoursConnectionClose(t *testing.T) {
	raw := "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	r, err := readResponse(bufio.NewReader(strings.NewReader(raw)), clock())
	if err != nil || r.Status != 502 || !r.Close {
		t.Errorf("got %+v, %v; want 502 and Close", r, err)
	}
}

func TestReadResponseReadsABodyWithoutLengthToTheEnd(t *testing.T) {
	raw := "HTTP/1.0 200 OK\r\n\r\nall of it"
	r, err := readResponse(bufio.NewReader(strings.NewReader(raw)), clock())
	if err != nil || r.Status != 200 || !r.Close || r.FirstBody.IsZero() {
		t.Errorf("got %+v, %v; want 200, Close, a first-body time", r, err)
	}
}

func TestReadResponseRejectsGarbage(t *testing.T) {
	for _, raw := range []string{
		"SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	} {
		if _, err := readResponse(bufio.NewReader(strings.NewReader(raw)), clock()); err == nil {
			t.Errorf("readResponse(%q) succeeded, want an error", raw)
		}
	}
}

func TestBuildRequestFramesTheBody(t *testing.T) {
	req := buildRequest("127.0.0.1:9", "/v1/chat/completions", []byte(`{"a":1}`))
	head, body, ok := bytes.Cut(req, []byte("\r\n\r\n"))
	if !ok || string(body) != `{"a":1}` {
		t.Fatalf("request %q: body not after the blank line", req)
	}
	for _, want := range []string{"POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1:9", "Content-Length: 7", "Content-Type: application/json"} {
		if !bytes.Contains(head, []byte(want)) {
			t.Errorf("request head %q lacks %q", head, want)
		}
	}
}
