package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The load generator shares the two cores with the servers it measures, so
// it is kept lean on purpose: one keep-alive TCP connection per worker, the
// request bytes built once, and a response reader that only finds where the
// body ends and discards it. Everything it spends is taken from the server
// under test equally in every configuration.

// buildRequest returns the bytes of one POST with a JSON body. The same
// bytes go to every configuration; the Authorization header is what the mock
// wants when called directly or through the bare proxy (the orchestrator
// ignores it: its auth is off and it sends its own key upstream).
func buildRequest(host, path string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer sk-gwbench\r\nUser-Agent: gwbench\r\nContent-Length: %d\r\n\r\n",
		path, host, len(body))
	b.Write(body)
	return b.Bytes()
}

// response is what the generator keeps of one answer.
type response struct {
	Status int
	// FirstBody is when the first byte of the body was read: the first
	// non-empty chunk of a chunked (streamed) body, or the end of the
	// headers of a body with a Content-Length. Zero for an empty body.
	FirstBody time.Time
	// Close is set when the server will close the connection afterwards.
	Close bool
}

var errMalformed = errors.New("malformed response")

// readResponse reads one HTTP/1.1 response from br and discards its body.
func readResponse(br *bufio.Reader, now func() time.Time) (response, error) {
	var r response
	line, err := br.ReadSlice('\n')
	if err != nil {
		return r, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return r, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	r.Status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return r, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	if line[7] == '0' {
		r.Close = true // HTTP/1.0 closes unless told otherwise
	}
	contentLength, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return r, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return r, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			contentLength, err = strconv.Atoi(string(value))
			if err != nil || contentLength < 0 {
				return r, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			r.Close = bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		return r, readChunked(br, &r, now)
	case contentLength > 0:
		r.FirstBody = now()
		_, err = br.Discard(contentLength)
		return r, err
	case contentLength == 0 || r.Status == 204 || r.Status == 304:
		return r, nil
	default:
		// No length: the body runs to the end of the connection.
		r.Close = true
		if _, err := br.Peek(1); err == nil {
			r.FirstBody = now()
		}
		for {
			if _, err := br.Discard(br.Buffered() + 1); err != nil {
				return r, nil // the end of the connection ends this body
			}
		}
	}
}

func readChunked(br *bufio.Reader, r *response, now func() time.Time) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		hex := bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(hex, ';'); i >= 0 {
			hex = hex[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(hex)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			// Trailers, if any, then the empty line.
			for {
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if r.FirstBody.IsZero() {
			r.FirstBody = now()
		}
		if _, err := br.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

// conn is one keep-alive connection of the generator. Not safe for
// concurrent use: each worker owns one.
type conn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	// deadline bounds every read and write of the phase, so a stuck server
	// cannot hang the bench.
	deadline time.Time
}

func (c *conn) dial() error {
	nc, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
	if err != nil {
		return err
	}
	if err := nc.SetDeadline(c.deadline); err != nil {
		nc.Close()
		return err
	}
	c.c = nc
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 32<<10)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

// setDeadline bounds the phase's I/O on this connection.
func (c *conn) setDeadline(t time.Time) error {
	c.deadline = t
	if c.c == nil {
		return nil
	}
	return c.c.SetDeadline(t)
}

// do sends req and reads the answer. On any error the connection is closed,
// and the next call dials again.
func (c *conn) do(req []byte) (response, error) {
	if c.c == nil {
		if err := c.dial(); err != nil {
			return response{}, err
		}
	}
	if _, err := c.c.Write(req); err != nil {
		c.close()
		return response{}, err
	}
	r, err := readResponse(c.br, time.Now)
	if err != nil || r.Close {
		c.close()
	}
	return r, err
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}
