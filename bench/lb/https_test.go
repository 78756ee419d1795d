package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

func TestBenchTable(t *testing.T) {
	table, err := benchTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1:8443", "bench.test"} {
		if b, ok := table.Match(host, "/4k"); !ok || b != benchBackend {
			t.Errorf("Match(%q, /4k) = %q %v, want %q", host, b, ok, benchBackend)
		}
	}
	if _, ok := table.TLSIssuer("bench.test"); !ok {
		t.Error("bench.test is not a tls host")
	}
}

func TestWriteCert(t *testing.T) {
	c, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("key is %T, want ECDSA", pair.PrivateKey)
	}
	for _, name := range []string{"127.0.0.1", "bench.test"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.roots}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(c.combined, c.combined); err != nil {
		t.Errorf("the combined file is not the same certificate and key: %v", err)
	}
}

func TestHTTPSConfigs(t *testing.T) {
	c := &certFiles{cert: "/d/cert.pem", key: "/d/key.pem", combined: "/d/cert-key.pem"}
	backends := []string{"127.0.0.1:1", "127.0.0.1:2"}
	tests := []struct {
		name      string
		conf      string
		want, not []string
	}{
		{"nginx over HTTP has no TLS", nginxProxyConf("/p", 80, backends, nil), []string{"listen 127.0.0.1:80;"}, []string{"ssl"}},
		{"nginx over HTTPS serves the certificate", nginxProxyConf("/p", 443, backends, c),
			[]string{"listen 127.0.0.1:443 ssl http2;", "ssl_certificate /d/cert.pem;", "ssl_certificate_key /d/key.pem;", "keepalive 64;"}, nil},
		{"haproxy over HTTP has no TLS", haproxyConf(80, backends, nil), []string{"bind 127.0.0.1:80\n"}, []string{"ssl"}},
		{"haproxy over HTTPS serves the certificate", haproxyConf(443, backends, c), []string{"bind 127.0.0.1:443 ssl crt /d/cert-key.pem alpn h2,http/1.1\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.conf, w) {
					t.Errorf("no %q in\n%s", w, tt.conf)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(tt.conf, n) {
					t.Errorf("%q in\n%s", n, tt.conf)
				}
			}
		})
	}
}
