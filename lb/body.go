package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
)

// The copy functions move a message body from src to dst, flushing dst
// whenever they are about to wait on src so a streamed body is never held
// back. They return the error of each side separately: a failed read and a
// failed write call for different answers.

var (
	errBadChunk     = errors.New("lb: malformed chunked body")
	errLineTooLong  = errors.New("lb: chunk line longer than the read buffer")
	errTrailerLarge = errors.New("lb: chunked trailer larger than 64 KiB")
)

// spliceAbove is the remaining length from which a Content-Length response
// body is spliced between the sockets instead of copied through buffers.
const spliceAbove = 128 << 10

// fill waits for src to have data, flushing dst first.
func fill(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	if src.Buffered() > 0 {
		return nil, nil
	}
	if werr = dst.Flush(); werr != nil {
		return nil, werr
	}
	_, rerr = src.Peek(1)
	return rerr, nil
}

// copyN copies exactly n bytes.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) (rerr, werr error) {
	for n > 0 {
		if rerr, werr = fill(dst, src); rerr != nil || werr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return rerr, werr
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, werr = dst.Write(b); werr != nil {
			return nil, werr
		}
		src.Discard(k)
		n -= int64(k)
	}
	return nil, nil
}

// copyNSplice is copyN for a response: once src's buffer is drained and a
// large remainder is left, the kernel moves it (splice on Linux). Errors are
// not attributed there: either way the exchange is over.
func copyNSplice(dst *bufio.Writer, dstConn net.Conn, src *bufio.Reader, srcConn net.Conn, n int64, lr *io.LimitedReader) (rerr, werr error) {
	tc, ok := dstConn.(*net.TCPConn)
	if !ok || n <= spliceAbove {
		return copyN(dst, src, n)
	}
	if k := int64(src.Buffered()); k > 0 {
		k = min(k, n)
		if rerr, werr = copyN(dst, src, k); rerr != nil || werr != nil {
			return rerr, werr
		}
		n -= k
	}
	if n == 0 {
		return nil, nil
	}
	if werr = dst.Flush(); werr != nil {
		return nil, werr
	}
	*lr = io.LimitedReader{R: srcConn, N: n}
	_, err := tc.ReadFrom(lr)
	left := lr.N
	*lr = io.LimitedReader{}
	if err != nil {
		return err, nil
	}
	if left > 0 {
		return io.ErrUnexpectedEOF, nil
	}
	return nil, nil
}

// copyUntilEOF copies until src ends: a response delimited by close.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	for {
		if rerr, werr = fill(dst, src); werr != nil {
			return nil, werr
		}
		if rerr == io.EOF {
			return nil, nil
		}
		if rerr != nil {
			return rerr, nil
		}
		b, _ := src.Peek(src.Buffered())
		if _, werr = dst.Write(b); werr != nil {
			return nil, werr
		}
		src.Discard(len(b))
	}
}

// readLine reads one line of chunked framing; it is valid until src is read
// again.
func readLine(dst *bufio.Writer, src *bufio.Reader) (line []byte, rerr, werr error) {
	if b, _ := src.Peek(src.Buffered()); bytes.IndexByte(b, '\n') < 0 {
		if werr = dst.Flush(); werr != nil {
			return nil, nil, werr
		}
	}
	line, rerr = src.ReadSlice('\n')
	switch rerr {
	case nil:
	case bufio.ErrBufferFull:
		rerr = errLineTooLong
	case io.EOF:
		rerr = io.ErrUnexpectedEOF
	}
	return line, rerr, nil
}

// chunkSize parses a chunk-size line (hex size, optional extensions).
func chunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	if l := len(rest); l > 0 && rest[l-1] == '\n' {
		rest = rest[:l-1]
		if l := len(rest); l > 0 && rest[l-1] == '\r' {
			rest = rest[:l-1]
		}
	}
	if len(rest) > 0 && rest[0] != ';' && rest[0] != ' ' && rest[0] != '\t' {
		return 0, false
	}
	return n, validValue(rest)
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}

// copyChunked copies a chunked body through with its framing, extensions
// and trailer fields as they are; with dechunk (an HTTP/1.0 client) only the
// data goes through.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, dechunk bool) (rerr, werr error) {
	var line []byte
	for {
		if line, rerr, werr = readLine(dst, src); rerr != nil || werr != nil {
			return rerr, werr
		}
		size, ok := chunkSize(line)
		if !ok {
			return errBadChunk, nil
		}
		if !dechunk {
			if _, werr = dst.Write(line); werr != nil {
				return nil, werr
			}
		}
		if size == 0 {
			break
		}
		if rerr, werr = copyN(dst, src, size); rerr != nil || werr != nil {
			return rerr, werr
		}
		if line, rerr, werr = readLine(dst, src); rerr != nil || werr != nil {
			return rerr, werr
		}
		if !isBlankLine(line) {
			return errBadChunk, nil
		}
		if !dechunk {
			if _, werr = dst.WriteString("\r\n"); werr != nil {
				return nil, werr
			}
		}
	}
	total := 0
	for {
		if line, rerr, werr = readLine(dst, src); rerr != nil || werr != nil {
			return rerr, werr
		}
		if total += len(line); total > maxHeadSize {
			return errTrailerLarge, nil
		}
		if !dechunk {
			if _, werr = dst.Write(line); werr != nil {
				return nil, werr
			}
		}
		if isBlankLine(line) {
			return nil, nil
		}
	}
}
