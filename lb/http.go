package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Buffer sizes. A client connection keeps its read buffer between requests
// (pipelined bytes may sit in it); everything else is borrowed per request.
const (
	clientReadSize    = 4 << 10
	clientWriteSize   = 8 << 10
	upstreamReadSize  = 8 << 10
	upstreamWriteSize = 4 << 10
)

// expectContinueTimeout is how long a request with Expect: 100-continue
// waits for the endpoint's interim answer before its body is sent anyway,
// for endpoints that never send 100.
const expectContinueTimeout = time.Second

var errUnexpected101 = errors.New("lb: endpoint switched protocols unasked")

// exchange holds the buffers of one request and its response. It returns
// to exchangePool afterwards, so a request in steady state allocates
// nothing.
type exchange struct {
	cbw     *bufio.Writer // to the client
	ubr     *bufio.Reader // from the endpoint
	ubw     *bufio.Writer // to the endpoint, for requests with a body
	head    []byte        // the request head as the endpoint gets it
	scratch []byte        // a head longer than a read buffer
	fields  []field
	tokens  []span
	req     request
	resp    response
	lr      io.LimitedReader

	keepClient bool      // the client connection stays open after this exchange
	end        time.Time // when the response was complete
}

var exchangePool = sync.Pool{New: func() any {
	return &exchange{
		cbw:    bufio.NewWriterSize(io.Discard, clientWriteSize),
		ubr:    bufio.NewReaderSize(nil, upstreamReadSize),
		ubw:    bufio.NewWriterSize(io.Discard, upstreamWriteSize),
		head:   make([]byte, 0, 1024),
		fields: make([]field, 0, 32),
	}
}}

// release drops references to connections and oversized buffers before the
// exchange goes back to the pool.
func (ex *exchange) release() {
	ex.cbw.Reset(io.Discard)
	ex.ubr.Reset(nil)
	ex.ubw.Reset(io.Discard)
	if cap(ex.scratch) > 16<<10 {
		ex.scratch = nil
	}
	if cap(ex.head) > 16<<10 {
		ex.head = make([]byte, 0, 1024)
	}
	if cap(ex.fields) > 256 {
		ex.fields = make([]field, 0, 32)
	}
	ex.tokens = ex.tokens[:0]
	exchangePool.Put(ex)
}

// outcome is how one attempt at an endpoint ended.
type outcome int

const (
	outDone    outcome = iota // response relayed
	outRetry                  // failed before any response byte; another endpoint may take the request
	outStale                  // a reused connection turned out dead; a fresh one to the same endpoint may take it
	outGateway                // failed, and the request cannot be sent again: answer 502
	outAbort                  // failed after the client saw part of a response, or the client failed
)

// httpConn serves HTTP/1.x on one client connection.
type httpConn struct {
	b        *Balancer
	c        *clientConn
	r        *route
	conn     net.Conn // c.conn, or the TLS connection over it
	https    bool
	br       *bufio.Reader
	clientIP string
}

func (b *Balancer) serveHTTP(c *clientConn) {
	conn, https := c.conn, false
	if cfg := c.r.cfg.Load(); cfg.tls != nil {
		tc := b.handshake(c, cfg.tls)
		if tc == nil {
			c.conn.Close()
			b.release(c)
			return
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			b.handOff(c, tc, cfg.other)
			return
		}
		conn, https = tc, true
	}
	defer b.release(c)
	defer conn.Close()
	h := &httpConn{
		b:        b,
		c:        c,
		r:        c.r,
		conn:     conn,
		https:    https,
		br:       bufio.NewReaderSize(conn, clientReadSize),
		clientIP: hostOf(c.conn.RemoteAddr()),
	}
	for {
		if _, err := h.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(connIdle, connBusy) {
			return // closed as idle just as a request came: the client retries
		}
		start := b.now()
		ex := exchangePool.Get().(*exchange)
		ex.cbw.Reset(conn)
		keep := h.serve(ex, start)
		end := ex.end
		ex.release()
		c.lastActive.Store(end.UnixNano())
		if !keep {
			return
		}
		c.state.Store(connIdle)
		if b.draining.Load() || h.r.closing.Load() {
			// The deferred Close ends a TLS connection with its alert.
			c.state.CompareAndSwap(connIdle, connClosed)
			return
		}
	}
}

// handshake runs the TLS handshake of a new connection within
// HandshakeTimeout, in the connection's goroutine so that a slow client
// holds up no one else. It returns nil when the handshake failed; failures
// are counted, except a connection closed before sending anything (a port
// probe) or closed by the balancer.
func (b *Balancer) handshake(c *clientConn, cfg *tls.Config) *tls.Conn {
	tc := tls.Server(c.conn, cfg)
	c.conn.SetDeadline(time.Now().Add(b.opts.HandshakeTimeout))
	err := tc.Handshake()
	if err == nil {
		err = c.conn.SetDeadline(time.Time{})
	}
	if err != nil {
		if !errors.Is(err, io.EOF) && c.state.Load() != connClosed {
			c.r.handshakes.Add(1)
			b.log.Debug("tls handshake", "route", c.r.name, "client", c.conn.RemoteAddr().String(), "err", err)
		}
		return nil
	}
	c.lastActive.Store(b.now().UnixNano())
	return tc
}

// handOff gives a TLS connection that negotiated a protocol other than
// HTTP/1.1 to other, which owns it from then on: the balancer forgets it.
// A closing route or balancer closes it instead, as it would an idle
// HTTP/1.1 connection.
func (b *Balancer) handOff(c *clientConn, tc *tls.Conn, other func(*tls.Conn)) {
	mine := c.state.CompareAndSwap(connIdle, connBusy) // else closed by Shutdown or as idle
	b.release(c)
	if !mine || other == nil || b.draining.Load() || c.r.closing.Load() {
		tc.Close()
		return
	}
	other(tc)
}

// localHost is the address the client connected to, as a Host value.
func (h *httpConn) localHost() string { return h.c.conn.LocalAddr().String() }

// rootURI stands for the empty path of an absolute-form target.
var rootURI = []byte("/")

// requestURI returns the path and query of a request target: the target
// itself in origin form ("/a?b") and asterisk form ("*"), the part after
// the authority in absolute form ("http://host/a?b"; "/" for
// "http://host").
func requestURI(target []byte) []byte {
	if len(target) > 0 && target[0] == '/' {
		return target
	}
	i := bytes.Index(target, []byte("://"))
	if i < 0 {
		return target
	}
	rest := target[i+3:]
	j := bytes.IndexAny(rest, "/?")
	if j < 0 {
		return rootURI
	}
	return rest[j:]
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// serve proxies one request and reports whether the client connection
// stays open.
func (h *httpConn) serve(ex *exchange, start time.Time) bool {
	b, r := h.b, h.r
	head, n, _, err := readHead(h.br, &ex.scratch)
	if err != nil {
		ex.end = b.now()
		if errors.Is(err, errHeadTooLarge) {
			h.reject(ex, 431, false, "", "request head larger than 64 KiB\n")
			lingerClose(h.conn)
		}
		return false
	}
	req := &ex.req
	var status int
	ex.fields, ex.tokens, status = parseRequest(head, req, ex.fields[:0], ex.tokens[:0])
	if status != 0 {
		h.br.Discard(n)
		ex.end = b.now()
		h.reject(ex, status, false, "", "malformed request\n")
		lingerClose(h.conn)
		return false
	}
	cfg := r.cfg.Load()
	pool := cfg.pool
	if cfg.redirect != nil || cfg.router != nil {
		host := req.host.of(head) // empty without a Host field
		uri := requestURI(req.target.of(head))
		if cfg.redirect != nil {
			if loc := cfg.redirect(host, uri); loc != "" {
				h.br.Discard(n)
				if !validValue([]byte(loc)) {
					return h.answer(ex, start, 500, class5xx, "", "invalid redirect location\n")
				}
				return h.answer(ex, start, 308, class3xx, loc, "redirecting to "+loc+"\n")
			}
		}
		if cfg.router != nil {
			path := uri
			if i := bytes.IndexByte(path, '?'); i >= 0 {
				path = path[:i]
			}
			if pool = cfg.router(host, path); pool == nil {
				msg := "no rule for host " + strconv.Quote(string(host)) + " path " + string(path) + "\n"
				h.br.Discard(n)
				return h.answer(ex, start, 404, class4xx, "", msg)
			}
		}
	}
	ex.head = appendUpstreamHead(ex.head[:0], head, req, ex.fields, h.clientIP, h.https, h.localHost)
	h.br.Discard(n)

	m := pool.eps.Load()
	var (
		tried   triedSet
		last    *epStats
		lastErr error
	)
	for {
		e, probe := pool.pick(m, &tried, b.now)
		if e == nil {
			break
		}
		tried.add(e)
		s := e.statsFor(r)
		e.requests.Add(1)
		e.active.Add(1)
		out, err := h.attempt(ex, e, s, probe)
		e.active.Add(-1)
		s.used.touch()
		switch out {
		case outDone:
			s.codes[statusClass(ex.resp.status)].Add(1)
			r.hist.observe(ex.end.Sub(start))
			return ex.keepClient
		case outAbort:
			s.codes[classError].Add(1)
			ex.end = b.now()
			r.hist.observe(ex.end.Sub(start))
			b.log.Debug("exchange abandoned", "route", r.name, "endpoint", e.addr, "err", err)
			return false
		}
		// Failed before a response (responses are counted in roundTrip).
		e.tally.attempt(true)
		last, lastErr = s, err
		b.log.Debug("attempt failed", "route", r.name, "endpoint", e.addr, "err", err, "retry", out == outRetry)
		if out != outRetry {
			break
		}
	}
	if last == nil {
		return h.answer(ex, start, 503, classError, "", "no ready endpoints for "+pool.name+"\n")
	}
	keep := !req.close && !req.hasBody() && !b.draining.Load() && !r.closing.Load()
	ex.end = b.now()
	last.codes[classError].Add(1)
	h.reject(ex, 502, keep, "", "no endpoint of "+r.name+" answered: "+lastErr.Error()+"\n")
	r.hist.observe(ex.end.Sub(start))
	return keep
}

// answer sends a response of the proxy's own to a request that reached no
// endpoint, and counts it under the route; a location makes it a
// redirect. The connection stays open unless the request's body would be
// left unread.
func (h *httpConn) answer(ex *exchange, start time.Time, status, class int, location, msg string) bool {
	b, r, req := h.b, h.r, &ex.req
	keep := !req.close && !req.hasBody() && !b.draining.Load() && !r.closing.Load()
	r.own[class].Add(1)
	h.reject(ex, status, keep, location, msg)
	ex.end = b.now()
	r.hist.observe(ex.end.Sub(start))
	if !keep && req.hasBody() {
		lingerClose(h.conn)
	}
	return keep
}

// attempt sends the request to e over an idle connection or a new one. A
// connection found dead on reuse is replaced by a fresh dial to the same
// endpoint, without counting as another attempt.
func (h *httpConn) attempt(ex *exchange, e *endpoint, s *epStats, probe bool) (outcome, error) {
	var uc *upConn
	if !probe {
		uc = e.getIdle()
	}
	reused := uc != nil
	for {
		if uc == nil {
			var err error
			if uc, err = h.b.dial(e, s); err != nil {
				return outRetry, err // nothing was sent: any request may go elsewhere
			}
		}
		h.c.up.Store(uc)
		out, err := h.roundTrip(ex, uc, reused)
		h.c.up.Store(nil)
		if out == outDone {
			return out, nil
		}
		uc.conn.Close()
		if out != outStale {
			return out, err
		}
		// Older idle connections to e are likely as dead as this one was.
		e.closeIdle()
		uc, reused = nil, false
	}
}

// failedBeforeResponse classifies a failure before any response byte
// arrived: the request is sent again only if that cannot repeat its
// effect, that is it is idempotent (or nothing of it reached the endpoint)
// and the client's body was not consumed.
func failedBeforeResponse(req *request, reused, bodyConsumed, wrote bool, err error) (outcome, error) {
	if bodyConsumed || (wrote && !req.idempotent) {
		return outGateway, err
	}
	if reused {
		return outStale, err
	}
	return outRetry, err
}

// roundTrip sends the request over uc and relays the response. On outDone
// it has put uc back in the idle pool or closed it.
func (h *httpConn) roundTrip(ex *exchange, uc *upConn, reused bool) (outcome, error) {
	req, conn := &ex.req, uc.conn
	ex.ubr.Reset(conn)
	bodyPending := req.hasBody()
	bodyConsumed := false

	// A request that cannot be replayed must not go down a connection the
	// endpoint closed while it idled: check first, it costs one syscall.
	if reused && (bodyPending || !req.idempotent) && !alive(conn) {
		return outStale, errStale
	}
	sent := h.b.now()
	if !bodyPending {
		if _, err := conn.Write(ex.head); err != nil {
			return failedBeforeResponse(req, reused, false, true, err)
		}
	} else {
		ex.ubw.Reset(conn)
		ex.ubw.Write(ex.head)
		if !req.expect {
			bodyPending, bodyConsumed = false, true
			if out, err := h.sendBody(ex); out != outDone {
				return out, err
			}
		} else if err := ex.ubw.Flush(); err != nil {
			return failedBeforeResponse(req, reused, false, true, err)
		}
	}

	// Read the response, forwarding interim (1xx) ones.
	waiting := req.expect && bodyPending
	if waiting {
		conn.SetReadDeadline(time.Now().Add(expectContinueTimeout))
	}
	var head []byte
	var n int
	for {
		var got bool
		var err error
		head, n, got, err = readHead(ex.ubr, &ex.scratch)
		if waiting && (err == nil || !got) {
			conn.SetReadDeadline(time.Time{})
			waiting = false
			if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				// No 100 Continue came: send the body anyway.
				bodyPending, bodyConsumed = false, true
				if out, err := h.sendBody(ex); out != outDone {
					return out, err
				}
				continue
			}
		}
		if err != nil {
			if !got {
				return failedBeforeResponse(req, reused, bodyConsumed, true, err)
			}
			return outGateway, err
		}
		var ok bool
		ex.fields, ex.tokens, ok = parseResponse(head, &ex.resp, ex.fields[:0], ex.tokens[:0])
		if !ok {
			return outGateway, errBadResponse
		}
		st := ex.resp.status
		if st >= 200 || st == 101 {
			break
		}
		if !req.http10 { // HTTP/1.0 clients get no interim responses
			ex.cbw.Write(head)
			if err := ex.cbw.Flush(); err != nil {
				return outAbort, err
			}
		}
		ex.ubr.Discard(n)
		if st == 100 && bodyPending {
			bodyPending, bodyConsumed = false, true
			if out, err := h.sendBody(ex); out != outDone {
				return out, err
			}
		}
	}

	resp := &ex.resp
	if resp.status == 101 && !req.isUpgrade {
		return outGateway, errUnexpected101
	}
	uc.ep.tally.response(resp.status, h.b.now().Sub(sent))
	if resp.status == 101 {
		writeResponseHead(ex.cbw, head, resp, ex.fields, false, "Connection: Upgrade\r\n")
		ex.ubr.Discard(n)
		if err := ex.cbw.Flush(); err != nil {
			return outAbort, err
		}
		// The connection now carries another protocol: copy bytes both ways
		// until both sides are done. Neither connection is reused.
		tunnel(h.conn, h.br, conn, ex.ubr)
		ex.keepClient = false
		ex.end = h.b.now()
		return outDone, nil
	}

	type bodyKind int
	const (
		bodyNone bodyKind = iota
		bodyLength
		bodyChunked
		bodyUntilEOF
	)
	var kind bodyKind
	switch {
	case req.isHead || resp.status == 204 || resp.status == 304:
	case resp.chunked:
		kind = bodyChunked
	case resp.untilEOF || resp.length < 0:
		kind = bodyUntilEOF
	case resp.length > 0:
		kind = bodyLength
	}
	dechunk := kind == bodyChunked && req.http10
	// A body the client announced but the endpoint answered without asking
	// for (Expect and a final status) may still be on its way: close.
	keepClient := !req.close && !dechunk && kind != bodyUntilEOF && !bodyPending &&
		!h.b.draining.Load() && !h.r.closing.Load()
	keepUp := !resp.close && (!resp.http10 || resp.keepAlive) && kind != bodyUntilEOF && !bodyPending
	connField := ""
	switch {
	case !keepClient:
		connField = "Connection: close\r\n"
	case req.http10:
		connField = "Connection: keep-alive\r\n"
	}
	writeResponseHead(ex.cbw, head, resp, ex.fields, dechunk, connField)
	ex.ubr.Discard(n)

	var rerr, werr error
	switch kind {
	case bodyLength:
		rerr, werr = copyNSplice(ex.cbw, h.conn, ex.ubr, conn, resp.length, &ex.lr)
	case bodyChunked:
		rerr, werr = copyChunked(ex.cbw, ex.ubr, dechunk)
	case bodyUntilEOF:
		rerr, werr = copyUntilEOF(ex.cbw, ex.ubr)
	}
	if rerr != nil || werr != nil {
		if rerr != nil {
			uc.ep.tally.cutShort(resp.status)
		}
		return outAbort, errors.Join(rerr, werr)
	}
	// The upstream connection is idle again before the client sees the
	// end of the answer: its next request finds it there.
	ex.end = h.b.now()
	if !keepUp || ex.ubr.Buffered() != 0 || !uc.ep.putIdle(uc, h.b.opts.IdleConnsPerEndpoint, ex.end.UnixNano()) {
		conn.Close()
	}
	// The endpoint's part went well either way; a failed flush means the
	// client left.
	flushed := ex.cbw.Flush() == nil
	ex.keepClient = keepClient && flushed
	return outDone, nil
}

// sendBody streams the client's request body to the endpoint.
func (h *httpConn) sendBody(ex *exchange) (outcome, error) {
	var rerr, werr error
	if ex.req.chunked {
		rerr, werr = copyChunked(ex.ubw, h.br, false)
	} else {
		rerr, werr = copyN(ex.ubw, h.br, ex.req.length)
	}
	if rerr != nil {
		return outAbort, rerr // the client went away or sent a broken body
	}
	if werr == nil {
		werr = ex.ubw.Flush()
	}
	if werr != nil {
		return outGateway, werr
	}
	return outDone, nil
}

var statusText = map[int]string{
	308: "Permanent Redirect",
	400: "Bad Request",
	404: "Not Found",
	405: "Method Not Allowed",
	431: "Request Header Fields Too Large",
	500: "Internal Server Error",
	502: "Bad Gateway",
	503: "Service Unavailable",
	505: "HTTP Version Not Supported",
}

// reject answers the client with a short text response of the proxy's
// own, with a Location field unless location is "".
func (h *httpConn) reject(ex *exchange, status int, keep bool, location, msg string) {
	w := ex.cbw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(statusText[status])
	if location != "" {
		w.WriteString("\r\nLocation: ")
		w.WriteString(location)
	}
	w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(msg)))
	switch {
	case !keep:
		w.WriteString("\r\nConnection: close")
	case ex.req.http10:
		w.WriteString("\r\nConnection: keep-alive")
	}
	w.WriteString("\r\n\r\n")
	if !ex.req.isHead {
		w.WriteString(msg)
	}
	w.Flush()
}

// lingerClose half-closes a connection the proxy rejects while the client
// may still be sending, and reads what comes for a moment: closing with
// unread input makes the kernel reset the connection, and the client could
// lose the answer. Over TLS the half-close is the close_notify alert.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c, 256<<10)
}
