package lb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// maxHeadSize bounds a message head (start line and fields); a request
// whose head is longer gets 431.
const maxHeadSize = 64 << 10

var (
	errHeadTooLarge  = errors.New("lb: message head larger than 64 KiB")
	errTruncatedHead = errors.New("lb: connection closed inside a message head")
	errBadResponse   = errors.New("lb: malformed response head")
)

// span is a byte range of a message head.
type span struct{ lo, hi int32 }

func (s span) of(b []byte) []byte { return b[s.lo:s.hi] }

// readHead returns the next message head from br: the start line and the
// fields through the empty line that ends them. While the head fits in br's
// buffer it is a slice of that buffer, valid until br is read again, and n is
// its length, to Discard once the head is used; a longer head (up to
// maxHeadSize) is gathered in *scratch, already consumed from br, and n is 0.
// got reports whether any byte arrived, which decides whether a failed
// upstream exchange may be retried.
func readHead(br *bufio.Reader, scratch *[]byte) (head []byte, n int, got bool, err error) {
	scanned := 0 // buf[:scanned] holds complete lines, none of them empty
	for {
		buf, _ := br.Peek(br.Buffered())
		for {
			i := bytes.IndexByte(buf[scanned:], '\n')
			if i < 0 {
				break
			}
			end := scanned + i + 1
			if isBlankLine(buf[scanned:end]) {
				if scanned > 0 {
					return buf[:end], end, true, nil
				}
				// Empty lines before a start line are ignored (RFC 9112 2.2).
				br.Discard(end)
				buf = buf[end:]
				got = true
				continue
			}
			scanned = end
		}
		if len(buf) > 0 {
			got = true
		}
		if len(buf) >= br.Size() {
			break
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if got {
				return nil, 0, true, fmt.Errorf("%w: %w", errTruncatedHead, err)
			}
			return nil, 0, false, err
		}
	}
	// Longer than the read buffer: gather it line by line.
	buf, _ := br.Peek(br.Buffered())
	s := append((*scratch)[:0], buf...)
	br.Discard(len(buf))
	lineStart := scanned
	for {
		line, err := br.ReadSlice('\n')
		s = append(s, line...)
		*scratch = s
		if len(s) > maxHeadSize {
			return nil, 0, true, errHeadTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, 0, true, fmt.Errorf("%w: %w", errTruncatedHead, err)
		}
		if isBlankLine(s[lineStart:]) {
			return s, 0, true, nil
		}
		lineStart = len(s)
	}
}

// field is one header field of a parsed head; kind says what forwarding
// does with it.
type field struct {
	name, value span
	kind        uint8
}

const (
	fieldKeep    uint8 = iota
	fieldDrop          // hop-by-hop
	fieldFraming       // Host, Content-Length, Transfer-Encoding: never dropped because Connection lists them
	fieldXFF           // request X-Forwarded-For: folded into the one the proxy writes
	fieldUpgrade       // response Upgrade: kept for 101 only
	fieldLength        // response Content-Length: dropped when the body is chunked
	fieldTE            // response Transfer-Encoding: dropped when de-chunking for HTTP/1.0
)

// request is what forwarding needs to know about a request head.
type request struct {
	method, target span
	http10         bool
	idempotent     bool
	isHead         bool
	length         int64 // Content-Length, -1 when absent
	chunked        bool
	close          bool // the client's connection ends after this exchange
	isUpgrade      bool
	upgrade        span // the Upgrade field's value when isUpgrade
	expect         bool // Expect: 100-continue
	host           span
	hasHost        bool
}

func (r *request) hasBody() bool { return r.chunked || r.length > 0 }

// response is what forwarding needs to know about a response head.
type response struct {
	status    int
	statusEnd int // end of the status line without its line ending
	http10    bool
	length    int64 // Content-Length, -1 when absent
	chunked   bool
	untilEOF  bool // Transfer-Encoding without final chunked: the body ends at close
	close     bool
	keepAlive bool
}

// tchar per RFC 9110 5.6.2.
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

// validValue rejects control characters other than HTAB, in particular the
// bare CR that some servers take for a line break.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// eqFold compares b with lower, an ASCII lowercase string, ignoring case.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// eqFoldBytes compares two header names ignoring ASCII case.
func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// nextToken returns the bounds of the next element of a comma-separated
// list starting at i, trimmed, and where the search goes on. lo == hi at the
// end of the list.
func nextToken(v []byte, i int) (lo, hi, next int) {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
		i++
	}
	lo = i
	for i < len(v) && v[i] != ',' {
		i++
	}
	hi = i
	for hi > lo && (v[hi-1] == ' ' || v[hi-1] == '\t') {
		hi--
	}
	return lo, hi, i
}

// lastToken returns the last element of a comma-separated list.
func lastToken(v []byte) []byte {
	var tok []byte
	for i := 0; i < len(v); {
		var lo, hi int
		lo, hi, i = nextToken(v, i)
		if lo < hi {
			tok = v[lo:hi]
		}
	}
	return tok
}

// parseLength parses a Content-Length value, or returns -1.
func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// headerLine splits the header line head[pos:] into a field. It returns the
// position after the line, the field, and ok=false for a malformed line; a
// line with no content (the end of the head) returns end=true.
func headerLine(head []byte, pos int) (next int, f field, end, ok bool) {
	i := bytes.IndexByte(head[pos:], '\n')
	if i < 0 {
		return len(head), f, true, true
	}
	next = pos + i + 1
	lineEnd := pos + i
	if lineEnd > pos && head[lineEnd-1] == '\r' {
		lineEnd--
	}
	if lineEnd == pos {
		return next, f, true, true
	}
	line := head[pos:lineEnd]
	if line[0] == ' ' || line[0] == '\t' {
		return next, f, false, false // obsolete line folding
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return next, f, false, false
	}
	vlo, vhi := pos+colon+1, lineEnd
	for vlo < vhi && (head[vlo] == ' ' || head[vlo] == '\t') {
		vlo++
	}
	for vhi > vlo && (head[vhi-1] == ' ' || head[vhi-1] == '\t') {
		vhi--
	}
	if !validValue(head[vlo:vhi]) {
		return next, f, false, false
	}
	f.name = span{int32(pos), int32(pos + colon)}
	f.value = span{int32(vlo), int32(vhi)}
	return next, f, false, true
}

// parseRequest parses a request head into req and fields (reused, returned
// grown), collecting the names listed in Connection in tokens. It returns 0,
// or the status to reject the request with.
func parseRequest(head []byte, req *request, fields []field, tokens []span) ([]field, []span, int) {
	*req = request{length: -1}
	nl := bytes.IndexByte(head, '\n')
	line := head[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !isToken(line[:sp1]) {
		return fields, tokens, 400
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return fields, tokens, 400
	}
	sp2 += sp1 + 1
	target, version := line[sp1+1:sp2], line[sp2+1:]
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return fields, tokens, 400
		}
	}
	switch {
	case len(version) == 8 && string(version[:7]) == "HTTP/1." && version[7] == '0':
		req.http10 = true
	case len(version) == 8 && string(version[:7]) == "HTTP/1." && '1' <= version[7] && version[7] <= '9':
	case len(version) == 8 && string(version[:5]) == "HTTP/" && '2' <= version[5] && version[5] <= '9' && version[6] == '.':
		return fields, tokens, 505
	default:
		return fields, tokens, 400
	}
	req.method = span{0, int32(sp1)}
	req.target = span{int32(sp1 + 1), int32(sp2)}
	switch string(line[:sp1]) {
	case "GET", "OPTIONS", "TRACE", "PUT", "DELETE":
		req.idempotent = true
	case "HEAD":
		req.idempotent, req.isHead = true, true
	case "CONNECT":
		return fields, tokens, 405
	}

	var connClose, connKeepAlive, connUpgrade, teSeen, hasUpgrade bool
	for pos := nl + 1; ; {
		next, f, end, ok := headerLine(head, pos)
		if !ok {
			return fields, tokens, 400
		}
		if end {
			break
		}
		pos = next
		name, value := f.name.of(head), f.value.of(head)
		switch len(name) {
		case 2:
			if eqFold(name, "te") {
				f.kind = fieldDrop
			}
		case 4:
			if eqFold(name, "host") {
				if req.hasHost {
					return fields, tokens, 400
				}
				req.host, req.hasHost, f.kind = f.value, true, fieldFraming
			}
		case 6:
			if eqFold(name, "expect") && eqFold(value, "100-continue") {
				req.expect = true
			}
		case 7:
			if eqFold(name, "upgrade") {
				req.upgrade, hasUpgrade, f.kind = f.value, true, fieldDrop
			} else if eqFold(name, "trailer") {
				f.kind = fieldDrop
			}
		case 10:
			if eqFold(name, "connection") {
				f.kind = fieldDrop
				var c, k, u bool
				c, k, u, tokens = connectionOptions(value, f.value.lo, tokens)
				connClose, connKeepAlive, connUpgrade = connClose || c, connKeepAlive || k, connUpgrade || u
			} else if eqFold(name, "keep-alive") {
				f.kind = fieldDrop
			}
		case 14:
			if eqFold(name, "content-length") {
				n := parseLength(value)
				if n < 0 || (req.length >= 0 && n != req.length) {
					return fields, tokens, 400
				}
				req.length, f.kind = n, fieldFraming
			}
		case 15:
			if eqFold(name, "x-forwarded-for") {
				f.kind = fieldXFF
			}
		case 16:
			if eqFold(name, "proxy-connection") || eqFold(name, "x-forwarded-host") {
				f.kind = fieldDrop
			}
		case 17:
			if eqFold(name, "transfer-encoding") {
				teSeen, f.kind = true, fieldFraming
				req.chunked = eqFold(lastToken(value), "chunked")
			} else if eqFold(name, "x-forwarded-proto") {
				f.kind = fieldDrop
			}
		}
		fields = append(fields, f)
	}
	if teSeen {
		// Both framings, or one that is not chunked, or chunked from an
		// HTTP/1.0 client: the body's end is uncertain (RFC 9112 6.1, 6.3).
		if req.length >= 0 || !req.chunked || req.http10 {
			return fields, tokens, 400
		}
	}
	if !req.http10 && !req.hasHost {
		return fields, tokens, 400
	}
	req.close = connClose || (req.http10 && !connKeepAlive)
	req.isUpgrade = connUpgrade && hasUpgrade && !req.http10
	dropListed(head, fields, tokens)
	return fields, tokens, 0
}

// dropListed drops the fields named by Connection (RFC 9110 7.6.1), except
// framing fields: dropping those would change where the message ends.
func dropListed(head []byte, fields []field, tokens []span) {
	for _, t := range tokens {
		tok := t.of(head)
		for i := range fields {
			f := &fields[i]
			if (f.kind == fieldKeep || f.kind == fieldXFF) && eqFoldBytes(f.name.of(head), tok) {
				f.kind = fieldDrop
			}
		}
	}
}

// appendUpstreamHead writes the request head the endpoint gets: the request
// line as HTTP/1.1 (the upstream connection stays alive whatever the
// client's version), the end-to-end fields, and X-Forwarded-For (appended
// to), X-Forwarded-Proto (https when the client connection is TLS) and
// X-Forwarded-Host (replaced). HTTP/1.1 requires
// Host, so an HTTP/1.0 request without one gets localHost, the address the
// client connected to.
func appendUpstreamHead(dst, head []byte, req *request, fields []field, clientIP string, https bool, localHost func() string) []byte {
	dst = append(dst, req.method.of(head)...)
	dst = append(dst, ' ')
	dst = append(dst, req.target.of(head)...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	xff := false
	for _, f := range fields {
		switch f.kind {
		case fieldKeep, fieldFraming:
			dst = append(dst, head[f.name.lo:f.value.hi]...)
			dst = append(dst, "\r\n"...)
		case fieldXFF:
			xff = true
		}
	}
	if !req.hasHost {
		dst = append(dst, "Host: "...)
		dst = append(dst, localHost()...)
		dst = append(dst, "\r\n"...)
	}
	if req.isUpgrade {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
		dst = append(dst, req.upgrade.of(head)...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if xff {
		for _, f := range fields {
			if f.kind == fieldXFF && f.value.lo < f.value.hi {
				dst = append(dst, f.value.of(head)...)
				dst = append(dst, ", "...)
			}
		}
	}
	dst = append(dst, clientIP...)
	if https {
		dst = append(dst, "\r\nX-Forwarded-Proto: https\r\n"...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: http\r\n"...)
	}
	if req.hasHost {
		dst = append(dst, "X-Forwarded-Host: "...)
		dst = append(dst, req.host.of(head)...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// parseResponse parses a response head into resp and fields; ok is false
// for a malformed head.
func parseResponse(head []byte, resp *response, fields []field, tokens []span) ([]field, []span, bool) {
	*resp = response{length: -1}
	nl := bytes.IndexByte(head, '\n')
	end := nl
	if end > 0 && head[end-1] == '\r' {
		end--
	}
	line := head[:end]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fields, tokens, false
	}
	resp.http10 = line[7] == '0'
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fields, tokens, false
		}
		resp.status = resp.status*10 + int(c-'0')
	}
	if resp.status < 100 {
		return fields, tokens, false
	}
	resp.statusEnd = end
	teSeen := false
	for pos := nl + 1; ; {
		next, f, end, ok := headerLine(head, pos)
		if !ok {
			return fields, tokens, false
		}
		if end {
			break
		}
		pos = next
		name, value := f.name.of(head), f.value.of(head)
		switch len(name) {
		case 2:
			if eqFold(name, "te") {
				f.kind = fieldDrop
			}
		case 7:
			if eqFold(name, "upgrade") {
				f.kind = fieldUpgrade
			} else if eqFold(name, "trailer") {
				f.kind = fieldDrop
			}
		case 10:
			if eqFold(name, "connection") {
				f.kind = fieldDrop
				var c, k bool
				c, k, _, tokens = connectionOptions(value, f.value.lo, tokens)
				resp.close, resp.keepAlive = resp.close || c, resp.keepAlive || k
			} else if eqFold(name, "keep-alive") {
				f.kind = fieldDrop
			}
		case 14:
			if eqFold(name, "content-length") {
				n := parseLength(value)
				if n < 0 || (resp.length >= 0 && n != resp.length) {
					return fields, tokens, false
				}
				resp.length, f.kind = n, fieldLength
			}
		case 16:
			if eqFold(name, "proxy-connection") {
				f.kind = fieldDrop
			}
		case 17:
			if eqFold(name, "transfer-encoding") {
				teSeen, f.kind = true, fieldTE
				resp.chunked = eqFold(lastToken(value), "chunked")
			}
		}
		fields = append(fields, f)
	}
	if teSeen {
		resp.untilEOF = !resp.chunked
		resp.length = -1
	}
	dropListed(head, fields, tokens)
	return fields, tokens, true
}

// writeResponseHead writes the head the client gets: the status line, the
// end-to-end fields, and conn (a Connection field, or "").
func writeResponseHead(w *bufio.Writer, head []byte, resp *response, fields []field, dechunk bool, conn string) {
	w.Write(head[:resp.statusEnd])
	w.WriteString("\r\n")
	for _, f := range fields {
		switch f.kind {
		case fieldDrop, fieldXFF:
			continue
		case fieldUpgrade:
			if resp.status != 101 {
				continue
			}
		case fieldLength:
			if resp.chunked || resp.untilEOF {
				continue
			}
		case fieldTE:
			if dechunk {
				continue
			}
		}
		w.Write(head[f.name.lo:f.value.hi])
		w.WriteString("\r\n")
	}
	w.WriteString(conn)
	w.WriteString("\r\n")
}

// connectionOptions reads a Connection field's value (at off in the
// head): whether it names close, keep-alive and upgrade, and the spans of
// the other tokens (fields to drop as hop-by-hop), appended to tokens.
func connectionOptions(value []byte, off int32, tokens []span) (closes, keepAlive, upgrade bool, _ []span) {
	for i := 0; i < len(value); {
		var lo, hi int
		lo, hi, i = nextToken(value, i)
		switch tok := value[lo:hi]; {
		case lo == hi:
		case eqFold(tok, "close"):
			closes = true
		case eqFold(tok, "keep-alive"):
			keepAlive = true
		case eqFold(tok, "upgrade"):
			upgrade = true
		default:
			tokens = append(tokens, span{off + int32(lo), off + int32(hi)})
		}
	}
	return closes, keepAlive, upgrade, tokens
}
