package lb

import (
	"bufio"
	"io"
	"net"
)

// serveTCP proxies one TCP-mode connection: it dials an endpoint, trying
// each endpoint once while dials fail, then copies both ways.
func (b *Balancer) serveTCP(c *clientConn) {
	defer b.release(c)
	defer c.conn.Close()
	c.state.Store(connBusy)
	start := b.now()
	r := c.r
	pool := r.cfg.Load().pool
	m := pool.eps.Load()
	var tried triedSet
	var last *epStats
	for {
		e, _ := pool.pick(m, &tried, b.now)
		if e == nil {
			break
		}
		tried.add(e)
		s := e.statsFor(r)
		up, err := b.dial(e, s)
		if err != nil {
			e.tally.attempt(true)
			b.log.Debug("dial", "route", r.name, "endpoint", e.addr, "err", err)
			last = s
			continue
		}
		c.up.Store(up)
		if c.state.Load() == connClosed { // forced shut while dialling
			up.conn.Close()
			return
		}
		e.requests.Add(1)
		e.active.Add(1)
		tunnel(c.conn, nil, up.conn, nil)
		e.tally.attempt(false)
		e.active.Add(-1)
		s.codes[classTCP].Add(1)
		r.hist.observe(b.now().Sub(start))
		return
	}
	if last == nil {
		r.own[classError].Add(1)
		b.log.Debug("no ready endpoints", "route", r.name)
	} else {
		last.codes[classError].Add(1)
		b.log.Debug("no endpoint answered", "route", r.name, "tried", tried.n)
	}
	r.hist.observe(b.now().Sub(start))
}

// tunnel copies client↔up until both directions end, passing on each EOF as
// a half-close, then closes both. Bytes already buffered in cbr or ubr (read
// past an HTTP head before an upgrade) go first. Between two TCP
// connections io.Copy splices on Linux.
func tunnel(client net.Conn, cbr *bufio.Reader, up net.Conn, ubr *bufio.Reader) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := drainBuffered(up, cbr); err == nil {
			copyConn(up, client)
		}
		closeWrite(up)
	}()
	if err := drainBuffered(client, ubr); err == nil {
		copyConn(client, up)
	}
	closeWrite(client)
	<-done
	client.Close()
	up.Close()
}

func drainBuffered(dst io.Writer, br *bufio.Reader) error {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	buf, _ := br.Peek(br.Buffered())
	_, err := dst.Write(buf)
	br.Discard(len(buf))
	return err
}

// closeWrite half-closes c, or closes it when it cannot half-close.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// copyConn copies src to dst until EOF; TCPConn.ReadFrom splices.
func copyConn(dst, src net.Conn) {
	if d, ok := dst.(*net.TCPConn); ok {
		d.ReadFrom(src)
		return
	}
	io.Copy(dst, src)
}
