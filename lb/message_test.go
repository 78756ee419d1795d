package lb

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		head   string
		status int
		check  func(t *testing.T, r *request)
	}{
		{"HTTP/1.0 without keep-alive closes", "GET / HTTP/1.0\r\n\r\n", 0, func(t *testing.T, r *request) {
			if !r.http10 || !r.close {
				t.Errorf("%+v", r)
			}
		}},
		{"HTTP/1.0 with keep-alive stays", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, func(t *testing.T, r *request) {
			if r.close {
				t.Errorf("%+v", r)
			}
		}},
		{"Connection close is honoured", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, func(t *testing.T, r *request) {
			if !r.close {
				t.Errorf("%+v", r)
			}
		}},
		{"POST is not idempotent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", 0, func(t *testing.T, r *request) {
			if r.idempotent || r.length != 12 || !r.hasBody() {
				t.Errorf("%+v", r)
			}
		}},
		{"chunked is the final coding", "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, func(t *testing.T, r *request) {
			if !r.chunked || !r.idempotent {
				t.Errorf("%+v", r)
			}
		}},
		{"bare LF line endings are accepted", "GET / HTTP/1.1\nHost: x\n\n", 0, nil},
		{"HTTP/2 is not spoken", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, nil},
		{"CONNECT is refused", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405, nil},
		{"two Host fields", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, nil},
		{"a bad length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, nil},
		{"chunked from HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r request
			_, _, status := parseRequest([]byte(tc.head), &r, nil, nil)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.check != nil {
				tc.check(t, &r)
			}
		})
	}

	t.Run("Connection cannot drop framing fields", func(t *testing.T) {
		head := []byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: content-length, host, x-a\r\nX-A: 1\r\n\r\n")
		var r request
		fields, _, status := parseRequest(head, &r, nil, nil)
		if status != 0 {
			t.Fatal(status)
		}
		out := string(appendUpstreamHead(nil, head, &r, fields, "192.0.2.1", false, func() string { return "" }))
		if !strings.Contains(out, "Content-Length: 1\r\n") || !strings.Contains(out, "Host: x\r\n") || strings.Contains(out, "X-A") {
			t.Errorf("upstream head %q", out)
		}
	})
}

func TestChunkSize(t *testing.T) {
	for _, tc := range []struct {
		line string
		size int64
		ok   bool
	}{
		{"1a\r\n", 26, true},
		{"0\r\n", 0, true},
		{"FF;name=value\r\n", 255, true},
		{"10 ;ext\r\n", 16, true},
		{"\r\n", 0, false},
		{"x1\r\n", 0, false},
		{"1x\r\n", 0, false},
		{"1000000000000000\r\n", 0, false},
	} {
		t.Run("chunk line "+strings.TrimSpace(tc.line), func(t *testing.T) {
			size, ok := chunkSize([]byte(tc.line))
			if size != tc.size || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", size, ok, tc.size, tc.ok)
			}
		})
	}
}

func TestReadHead(t *testing.T) {
	t.Run("leading empty lines are skipped", func(t *testing.T) {
		br := bufio.NewReaderSize(strings.NewReader("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), 64)
		var scratch []byte
		head, n, _, err := readHead(br, &scratch)
		if err != nil || string(head) != "GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
			t.Fatalf("%q %v", head, err)
		}
		br.Discard(n)
		if rest, _ := br.Peek(4); string(rest) != "rest" {
			t.Errorf("left %q", rest)
		}
	})

	t.Run("a head longer than the buffer is gathered", func(t *testing.T) {
		want := "GET / HTTP/1.1\r\nX-Long: " + strings.Repeat("y", 300) + "\r\n\r\n"
		br := bufio.NewReaderSize(strings.NewReader(want+"rest"), 64)
		var scratch []byte
		head, n, _, err := readHead(br, &scratch)
		if err != nil || string(head) != want || n != 0 {
			t.Fatalf("%q %d %v", head, n, err)
		}
	})

	t.Run("a connection closed mid-head reports that bytes came", func(t *testing.T) {
		br := bufio.NewReaderSize(strings.NewReader("HTTP/1.1 200"), 64)
		var scratch []byte
		if _, _, got, err := readHead(br, &scratch); !got || err == nil {
			t.Errorf("got %v, err %v", got, err)
		}
		br = bufio.NewReaderSize(strings.NewReader(""), 64)
		if _, _, got, err := readHead(br, &scratch); got || err == nil {
			t.Errorf("empty: got %v, err %v", got, err)
		}
	})
}
