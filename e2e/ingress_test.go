package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pebbleVersion is the ACME test server the Ingress test obtains
// certificates from.
const pebbleVersion = "v2.10.3"

const ingressManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  tls: [{hosts: [shop.fleet.test]}]
  rules:
  - host: shop.fleet.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
`

// pebble builds and starts Pebble and its DNS (every name resolves to
// 127.0.0.1), validating challenges on httpPort and tlsPort; it returns
// the ACME directory URL, the file of the root Pebble's own API
// certificate is signed by, and a client trusting it.
func pebble(t *testing.T, httpPort, tlsPort int) (dir, apiRoot string, issuedRoots *x509.CertPool) {
	t.Helper()
	bin := filepath.Join(stateDir, "pebble-bin")
	install := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion, "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@"+pebbleVersion)
	install.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install pebble: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/letsencrypt/pebble/v2@"+pebbleVersion).Output()
	if err != nil {
		t.Fatalf("go mod download pebble: %v", err)
	}
	var mod struct{ Dir string }
	json.Unmarshal(out, &mod)
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	acmePort, mgmtPort, dnsPort, ctsMgmt := free(), free(), free(), free()
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": fmt.Sprintf("127.0.0.1:%d", acmePort), "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate": filepath.Join(mod.Dir, "test/certs/localhost/cert.pem"), "privateKey": filepath.Join(mod.Dir, "test/certs/localhost/key.pem"),
		"httpPort": httpPort, "tlsPort": tlsPort, "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	cfgPath := filepath.Join(t.TempDir(), "pebble.json")
	b, _ := json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o644)
	start := func(name string, env []string, args ...string) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		log := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, log.String())
			}
		})
	}
	start("pebble-challtestsrv", nil, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", fmt.Sprintf("127.0.0.1:%d", ctsMgmt))
	start("pebble", []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, "-config", cfgPath, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	apiRoot = filepath.Join(mod.Dir, "test/certs/pebble.minica.pem")
	rootPEM, _ := os.ReadFile(apiRoot)
	api := x509.NewCertPool()
	api.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: api}}}
	var issued []byte
	eventually(t, "pebble to answer", func() bool {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		issued, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	})
	issuedRoots = x509.NewCertPool()
	if !issuedRoots.AppendCertsFromPEM(issued) {
		t.Fatalf("pebble's root is not PEM: %q", issued)
	}
	return fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort), apiRoot, issuedRoots
}

// An Ingress with a tls host gets a certificate from a real ACME server
// (Pebble) by itself, serves HTTPS with it (HTTP/2), and redirects plain
// HTTP there.
func TestIngress_ACMEWithPebble(t *testing.T) {
	const state = "ingress.db"
	httpPort, tlsPort := freePort(t), freePort(t)
	acmeDir, apiRoot, roots := pebble(t, httpPort, tlsPort)
	_, _, log := startServeLog(t, state, "--lb-address", "127.0.0.1", "--admin-address", "127.0.0.1:0", "--ingress-http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--ingress-https", fmt.Sprintf("127.0.0.1:%d", tlsPort), "--acme-ca", acmeDir, "--acme-ca-root", apiRoot, "--acme-email", "ops@fleet.test")
	m := writeManifest(t, "shop.yaml", ingressManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port)) // shop.fleet.test is here
	}
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DialContext: dialer, TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	var resp *http.Response
	var body string
	eventually(t, "the site over HTTPS with a certificate from Pebble", func() bool {
		r, err := client.Get(fmt.Sprintf("https://shop.fleet.test:%d/", tlsPort))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		resp, body = r, string(b)
		return r.StatusCode == 200
	})
	leaf := resp.TLS.PeerCertificates[0]
	if !strings.Contains(body, "hello from") || resp.Proto != "HTTP/2.0" || !slices.Contains(leaf.DNSNames, "shop.fleet.test") || len(resp.TLS.VerifiedChains) == 0 {
		t.Fatalf("got %s %q, certificate for %v issued by %s, %d verified chains", resp.Proto, body, leaf.DNSNames, leaf.Issuer, len(resp.TLS.VerifiedChains))
	}
	t.Logf("certificate for %v issued by %q, chain of %d", leaf.DNSNames, leaf.Issuer.CommonName, len(resp.TLS.VerifiedChains[0]))
	r, err := client.Get(fmt.Sprintf("http://shop.fleet.test:%d/cart", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if want := fmt.Sprintf("https://shop.fleet.test:%d/cart", tlsPort); r.StatusCode != http.StatusPermanentRedirect || r.Header.Get("Location") != want {
		t.Fatalf("plain HTTP: %d to %q, want 308 to %s", r.StatusCode, r.Header.Get("Location"), want)
	}
	addr := regexp.MustCompile(`address=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(log.String())
	if addr == nil {
		t.Fatalf("no metrics address in serve's log")
	}
	mr, err := http.Get(addr[1])
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	expiry := regexp.MustCompile(`fleet_ingress_certificate_expiry_timestamp_seconds\{host="shop\.fleet\.test",issuer="acme"\} (\S+)`).FindStringSubmatch(string(metrics))
	if expiry == nil {
		t.Fatalf("/metrics lacks the certificate's expiry:\n%s", metrics)
	}
	if v, _ := strconv.ParseFloat(expiry[1], 64); int64(v) != leaf.NotAfter.Unix() {
		t.Errorf("certificate expiry metric %s, want %d", expiry[1], leaf.NotAfter.Unix())
	}
}
