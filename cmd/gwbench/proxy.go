package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The bare proxy is configuration (b): one extra fasthttp hop with no
// parsing and no logic, the floor that any gateway in front of the mock pays.
// It forwards the request as received (minus the hop-by-hop Connection
// header) and streams the answer back, so SSE passes through chunk by chunk
// just as it does through the orchestrator.

// runProxy is `gwbench proxy -listen ADDR -upstream ADDR`.
func runProxy(args []string) int {
	fs := flag.NewFlagSet("gwbench proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "host:port to forward every request to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "gwbench proxy: -upstream is required")
		return 2
	}
	p := &bareProxy{hc: &fasthttp.HostClient{
		Addr:                *upstream,
		MaxConns:            1024,
		MaxIdleConnDuration: 10 * time.Second,
		// Read the answer as a stream: the bytes are passed on as they come,
		// which is what makes a streamed call's first chunk reach the client
		// without waiting for the last.
		StreamResponseBody: true,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
	}}
	srv := &fasthttp.Server{
		Handler:               p.handle,
		Name:                  "gwbench-proxy",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           90 * time.Second,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gwbench proxy: %v\n", err)
		return 1
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = ln.Close()
	}()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "gwbench proxy: %v\n", err)
		return 1
	}
	return 0
}

type bareProxy struct {
	hc *fasthttp.HostClient
}

func (p *bareProxy) handle(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request
	req.Header.Del("Connection")
	resp := fasthttp.AcquireResponse()
	if err := p.hc.Do(req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		ctx.Error("bad gateway: "+err.Error(), fasthttp.StatusBadGateway)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.Del("Connection")
	// The length is kept when the upstream gave one (a plain answer goes out
	// in one write); -1 streams it chunked, flushed chunk by chunk.
	size := resp.Header.ContentLength()
	if size < 0 {
		size = -1
	}
	ctx.Response.SetBodyStream(&upstreamBody{resp: resp}, size)
}

// upstreamBody hands the upstream answer's body to the server, and the
// answer back to its pool once the server has written it all (the server
// closes a body stream that is an io.Closer).
type upstreamBody struct {
	resp *fasthttp.Response
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if s := b.resp.BodyStream(); s != nil {
		return s.Read(p)
	}
	return 0, io.EOF
}

func (b *upstreamBody) Close() error {
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	return err
}
