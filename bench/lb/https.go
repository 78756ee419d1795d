package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdev/fleet/ingress"
	"github.com/fleetdev/fleet/lb"
	"github.com/fleetdev/fleet/spec"
)

// httpsChildFlag, as the first argument, makes this binary fleet's
// Ingress HTTPS server under test, like childFlag for the HTTP proxy.
const httpsChildFlag = "-child-fleet-https"

// certFiles is the one certificate every HTTPS proxy serves: an ECDSA
// P-256 leaf for bench.test and 127.0.0.1, signed by a CA of the
// benchmark's own.
type certFiles struct {
	cert, key string // PEM: the leaf; its key
	combined  string // both in one file, for HAProxy's crt
	ca        string // the CA's certificate, for a curl --cacert of a -keep run
	roots     *x509.CertPool
}

// writeCert makes the CA and the leaf and writes them into dir. Every
// proxy presents the same leaf alone; the CA is only the clients' trust.
func writeCert(dir string) (certFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-lb CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return certFiles{}, fmt.Errorf("create the CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return certFiles{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench.test"},
		DNSNames: []string{"bench.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return certFiles{}, fmt.Errorf("create the certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certFiles{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	c := certFiles{
		cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"),
		combined: filepath.Join(dir, "cert-key.pem"), ca: filepath.Join(dir, "ca.pem"),
		roots: x509.NewCertPool(),
	}
	c.roots.AddCert(ca)
	// nginx reads the key as root before it drops to nobody, and
	// HAProxy runs as root throughout: 0600 is enough.
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{c.cert, certPEM, 0o644},
		{c.key, keyPEM, 0o600},
		{c.combined, append(append([]byte{}, certPEM...), keyPEM...), 0o600},
		{c.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644},
	} {
		if err := os.WriteFile(f.path, f.data, f.perm); err != nil {
			return certFiles{}, err
		}
	}
	return c, nil
}

// fleetHTTPSArgv is the command line of fleet's HTTPS server process:
// this same binary in HTTPS child mode.
func fleetHTTPSArgv(exe, listen string, backends []string, c certFiles) []string {
	return []string{exe, httpsChildFlag, "-listen", listen, "-backends", strings.Join(backends, ","), "-cert", c.cert, "-key", c.key}
}

// benchManifest is what a user would apply for the benchmark's site: a
// Service and an Ingress terminating TLS in front of it. Ingress hosts
// must be DNS names and wrk sends Host 127.0.0.1:port, so the rule has
// no host (it matches any); the tls host is what the certificate is for.
// The certificate comes from the child's -cert and -key, not from the
// annotation's issuer.
const benchManifest = `apiVersion: v1
kind: Service
metadata: {name: bench}
spec: {type: ClusterIP, selector: {app: bench}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  annotations: {fleet.dev/tls: internal}
spec:
  tls: [{hosts: [bench.test]}]
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bench, port: {number: 80}}}}
`

// benchBackend is the Service port the manifest routes to, the key of
// its pool in fleet serve.
const benchBackend = ingress.Backend("default/bench:80")

// benchTable builds the routing table of benchManifest, as fleet serve
// does for the Ingresses and Services it is given.
func benchTable() (*ingress.Table, error) {
	r, err := spec.Parse("bench.yaml", []byte(benchManifest), "default")
	if err != nil {
		return nil, err
	}
	var ings []*spec.Ingress
	svcs := map[string]*spec.Service{}
	for _, o := range r.Objects {
		switch o := o.(type) {
		case *spec.Ingress:
			ings = append(ings, o)
		case *spec.Service:
			svcs[o.Namespace+"/"+o.Name] = o
		}
	}
	table, problems := ingress.Build(ings, svcs)
	if len(problems) > 0 {
		return nil, fmt.Errorf("build the routing table: %s", strings.Join(problems, "; "))
	}
	return table, nil
}

// pools gives the Ingress server each backend's load-balancer pool, as
// fleet serve's Pick does.
type pools map[ingress.Backend]*lb.Pool

var _ ingress.Upstreams = pools(nil)

// Pick picks an endpoint from b's pool.
func (p pools) Pick(b ingress.Backend) (string, func(int, time.Duration, bool), bool) {
	pool := p[b]
	if pool == nil {
		return "", nil, false
	}
	return pool.PickReport()
}

// runFleetHTTPSChild runs fleet's Ingress server on HTTPS only, with the
// benchmark's certificate and one P, until its stdin closes or it gets
// SIGTERM.
func runFleetHTTPSChild(args []string) error {
	fs := flag.NewFlagSet(httpsChildFlag, flag.ContinueOnError)
	listen := fs.String("listen", "", "HTTPS address")
	backends := fs.String("backends", "", "comma-separated backend addresses")
	certFile := fs.String("cert", "", "certificate PEM file")
	keyFile := fs.String("key", "", "key PEM file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *backends == "" || *certFile == "" || *keyFile == "" {
		return errors.New("need -listen, -backends, -cert and -key")
	}
	runtime.GOMAXPROCS(1)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("load the certificate: %w", err)
	}
	table, err := benchTable()
	if err != nil {
		return err
	}
	pool := lb.NewPool(string(benchBackend), lb.RoundRobin)
	pool.Set(strings.Split(*backends, ","))
	// As fleet serve wires it: HTTPS on the load balancer's fast path,
	// routed by the Ingress table, HTTP/2 back to the Ingress server.
	srv := &ingress.Server{
		HTTPSAddr: *listen,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		Upstreams: pools{benchBackend: pool},
		Pools:     func(ingress.Backend) *lb.Pool { return pool },
	}
	srv.SetTable(table)
	if err := srv.Start(); err != nil {
		return err
	}
	bal := lb.New(lb.Options{})
	route, _ := srv.HTTPSRoute()
	if errs := bal.Update([]lb.Route{route}); errs[route.Name] != nil {
		return errs[route.Name]
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bal.Shutdown(sctx)
	return srv.Shutdown(sctx)
}

// startFunc starts a server pinned to cpu and waits until url answers
// (run's start).
type startFunc func(name string, cpu int, withStdin bool, logs []string, url string, argv ...string) (*server, error)

// startHTTPS starts the three HTTPS proxies on ports, each with its own
// process, forwarding to backends as their HTTP counterparts do.
func startHTTPS(dir, exe string, ts toolset, ports []int, backends []string, cert certFiles, start startFunc) ([]*proxy, error) {
	fleet := &proxy{name: "fleet", port: ports[0]}
	ngx := &proxy{name: "nginx", port: ports[1]}
	hap := &proxy{name: "haproxy", port: ports[2]}
	var err error
	if fleet.srv, err = start("fleet-https", proxyCPU, true, nil, httpsURL(fleet.port, "/64"),
		fleetHTTPSArgv(exe, addr(fleet.port), backends, cert)...); err != nil {
		return nil, err
	}
	np := filepath.Join(dir, "proxy-nginx-https")
	if err := writeNginxPrefix(np, nginxProxyConf(np, ngx.port, backends, &cert)); err != nil {
		return nil, err
	}
	if ngx.srv, err = start("proxy-nginx-https", proxyCPU, false, []string{filepath.Join(np, "error.log")}, httpsURL(ngx.port, "/64"),
		nginxArgv(ts.nginx, np)...); err != nil {
		return nil, err
	}
	hcfg := filepath.Join(dir, "haproxy-https.cfg")
	if err := os.WriteFile(hcfg, []byte(haproxyConf(hap.port, backends, &cert)), 0o644); err != nil {
		return nil, err
	}
	if hap.srv, err = start("proxy-haproxy-https", proxyCPU, false, nil, httpsURL(hap.port, "/64"),
		ts.haproxy, "-f", hcfg, "-db", "-p", filepath.Join(dir, "haproxy-https.pid")); err != nil {
		return nil, err
	}
	return []*proxy{fleet, ngx, hap}, nil
}

// negotiated is the TLS version and cipher suite that an OpenSSL client
// with its defaults, as wrk is, gets from the server at port: TLS 1.3
// suites are the server's choice among the client's, so they may differ
// between proxies. "?" when the openssl command is missing or fails.
func negotiated(ctx context.Context, port int) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-brief", "-connect", addr(port), "-servername", "127.0.0.1")
	cmd.Stdin = bytes.NewReader(nil)
	out, _ := cmd.CombinedOutput()
	var version, suite string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Protocol version:"); ok {
			version = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "Ciphersuite:"); ok {
			suite = strings.TrimSpace(v)
		}
	}
	if version == "" || suite == "" {
		return "?"
	}
	return version + " " + suite
}
