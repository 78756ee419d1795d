package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestCertificates_Internal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _ := newStorage(t, "serve")
	c := &Certificates{Storage: s}
	c.Start(ctx)
	defer c.Stop()
	if err := c.SetHosts(map[string]string{"dev.test": "internal", "*.apps.test": "internal"}); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { conn.(*tls.Conn).Handshake(); conn.Close() }()
		}
	}()
	rootPEM, err := c.InternalRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	dial := func(name string) error {
		conn, err := tls.DialWithDialer(&net.Dialer{}, "tcp", ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			conn.Close()
		}
		return err
	}
	for _, name := range []string{"dev.test", "x.apps.test"} {
		if err := dial(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := dial("other.test"); err == nil {
		t.Error("a name in no Ingress got a certificate")
	}
	if exp := c.Expiries(); len(exp) != 1 || exp[0].Host != "dev.test" || exp[0].Issuer != "internal" || exp[0].NotAfter.Before(time.Now().Add(6*24*time.Hour)) {
		t.Errorf("expiries %+v; want dev.test's 7-day certificate (x.apps.test is served by the wildcard)", exp)
	}
	t.Run("the root survives a restart (it is in the state file)", func(t *testing.T) {
		again := &Certificates{Storage: s}
		again.Start(ctx)
		defer again.Stop()
		pem2, err := again.InternalRoot(ctx)
		if err != nil || string(pem2) != string(rootPEM) {
			t.Fatalf("a new root after restart: %v", err)
		}
	})
}
