package ingress

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Certificates gives the HTTPS listener its certificates: hosts of
// Ingresses annotated fleet.dev/tls: internal get one from fleet's local
// CA at once; all others come from an ACME CA through certmagic, obtained
// in the background as soon as they appear in an Ingress (and only then:
// a handshake for any other name is refused) and renewed before they
// expire. Everything is kept in the state file.
type Certificates struct {
	Storage *Storage
	// CA is the ACME directory URL. Default Let's Encrypt's production
	// directory (certmagic.LetsEncryptProductionCA).
	CA string
	// Email is the ACME account's contact; optional.
	Email string
	// TrustedRoots verifies the ACME server's own certificate (a private
	// CA such as Pebble); nil means the system's roots.
	TrustedRoots *x509.CertPool
	// HTTPPort and TLSPort are where this process serves HTTP and HTTPS
	// (where the ACME CA connects for HTTP-01 and TLS-ALPN-01).
	HTTPPort, TLSPort int
	// ListenHost is the address those listen on ("" for all).
	ListenHost string
	Logger     *zap.Logger

	mu       sync.Mutex
	cache    *certmagic.Cache
	cfg      *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	hosts    map[string]string // host → "acme" | "internal"
	managed  []string
	ca       *localCA
	leaves   map[string]*tls.Certificate
	bg       context.Context // certmagic's background work
	stopACME context.CancelFunc
}

// Start prepares certmagic; ctx bounds its background work.
func (c *Certificates) Start(ctx context.Context) {
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           log,
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: c.Storage,
		Logger:  log,
		OnDemand: &certmagic.OnDemandConfig{
			// Only names in an Ingress's tls section, whatever a client
			// asks for.
			DecisionFunc: func(_ context.Context, name string) error {
				if iss, ok := c.issuerFor(name); ok && iss == "acme" {
					return nil
				}
				return fmt.Errorf("%s is not a tls host of any Ingress", name)
			},
		},
	})
	ca := c.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	c.issuer = certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: ca, Email: c.Email, Agreed: true, TrustedRoots: c.TrustedRoots,
		AltHTTPPort: c.HTTPPort, AltTLSALPNPort: c.TLSPort, ListenHost: c.ListenHost, Logger: log,
	})
	cfg.Issuers = []certmagic.Issuer{c.issuer}
	actx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cache, c.cfg, c.bg, c.stopACME, c.hosts, c.leaves = cache, cfg, actx, cancel, map[string]string{}, map[string]*tls.Certificate{}
	c.mu.Unlock()
}

// Stop ends certmagic's background work.
func (c *Certificates) Stop() {
	if c.stopACME != nil {
		c.stopACME()
	}
	if c.cache != nil {
		c.cache.Stop()
	}
}

// SetHosts declares the TLS hosts and their issuers; ACME hosts new
// since the last call are obtained in the background (for as long as the
// context given to Start lasts).
func (c *Certificates) SetHosts(hosts map[string]string) error {
	c.mu.Lock()
	c.hosts = hosts
	var acme []string
	for h, iss := range hosts {
		if iss == "acme" {
			acme = append(acme, h)
		}
	}
	slices.Sort(acme)
	news := !slices.Equal(acme, c.managed)
	if news {
		c.managed = acme
	}
	cfg, bg := c.cfg, c.bg
	c.mu.Unlock()
	if !news || len(acme) == 0 {
		return nil
	}
	return cfg.ManageAsync(bg, acme)
}

func (c *Certificates) issuerFor(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if iss, ok := c.hosts[name]; ok {
		return iss, true
	}
	for h, iss := range c.hosts {
		if len(h) > 2 && h[:2] == "*." {
			if _, suffix, ok := cutLabel(name); ok && suffix == h[2:] {
				return iss, true
			}
		}
	}
	return "", false
}

func cutLabel(name string) (string, string, bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return name[:i], name[i+1:], true
		}
	}
	return "", "", false
}

// TLSConfig is the HTTPS listener's configuration: HTTP/2 and HTTP/1.1,
// and the ACME TLS-ALPN-01 challenge.
func (c *Certificates) TLSConfig() *tls.Config {
	base := c.cfg.TLSConfig()
	base.NextProtos = []string{"h2", "http/1.1", "acme-tls/1"}
	magic := base.GetCertificate
	base.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if iss, ok := c.issuerFor(hello.ServerName); ok && iss == "internal" && !slices.Contains(hello.SupportedProtos, "acme-tls/1") {
			return c.internal(hello.Context(), hello.ServerName)
		}
		return magic(hello)
	}
	return base
}

// HandleHTTPChallenge answers an ACME HTTP-01 challenge request; it
// reports whether r was one.
func (c *Certificates) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return c.issuer.HandleHTTPChallenge(w, r)
}

// internal returns a certificate for name from the local CA, issuing one
// (valid 7 days) when none is cached or it has less than a day left.
func (c *Certificates) internal(ctx context.Context, name string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if leaf := c.leaves[name]; leaf != nil && time.Until(leaf.Leaf.NotAfter) > 24*time.Hour {
		return leaf, nil
	}
	if c.ca == nil {
		ca, err := loadOrCreateCA(ctx, c.Storage)
		if err != nil {
			return nil, err
		}
		c.ca = ca
	}
	leaf, err := c.ca.issue(name, 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	c.leaves[name] = leaf
	return leaf, nil
}

// InternalRoot is the local CA's certificate in PEM, created if need be,
// for clients to trust (fleet serve writes it next to the state file).
func (c *Certificates) InternalRoot(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ca == nil {
		ca, err := loadOrCreateCA(ctx, c.Storage)
		if err != nil {
			return nil, err
		}
		c.ca = ca
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ca.cert.Raw}), nil
}

// localCA is fleet's own root for development certificates.
type localCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

const (
	caCertKey = "local-ca/root.crt"
	caKeyKey  = "local-ca/root.key"
)

func loadOrCreateCA(ctx context.Context, s *Storage) (*localCA, error) {
	certPEM, err1 := s.Load(ctx, caCertKey)
	keyPEM, err2 := s.Load(ctx, caKeyKey)
	if err1 == nil && err2 == nil {
		cb, _ := pem.Decode(certPEM)
		kb, _ := pem.Decode(keyPEM)
		if cb == nil || kb == nil {
			return nil, errors.New("local CA in the state file is not PEM")
		}
		cert, err := x509.ParseCertificate(cb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("local CA certificate: %w", err)
		}
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("local CA key: %w", err)
		}
		return &localCA{cert: cert, key: key}, nil
	}
	if !errors.Is(err1, fs.ErrNotExist) && err1 != nil {
		return nil, err1
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "fleet local CA", Organization: []string{"fleet"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := s.Store(ctx, caKeyKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return nil, err
	}
	if err := s.Store(ctx, caCertKey, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, err
	}
	return &localCA{cert: cert, key: key}, nil
}

func (ca *localCA) issue(name string, validity time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue a local certificate for %s: %w", name, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Expiry is when the certificate served for a TLS host expires.
type Expiry struct {
	Host, Issuer string
	NotAfter     time.Time
}

// Expiries lists the certificates held now for the TLS hosts (hosts still
// waiting for theirs are left out).
func (c *Certificates) Expiries() []Expiry {
	c.mu.Lock()
	hosts := maps.Clone(c.hosts)
	leaves := maps.Clone(c.leaves)
	cache := c.cache
	c.mu.Unlock()
	var out []Expiry
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		iss := hosts[h]
		if iss == "internal" {
			if l := leaves[h]; l != nil && l.Leaf != nil {
				out = append(out, Expiry{Host: h, Issuer: iss, NotAfter: l.Leaf.NotAfter})
			}
			continue
		}
		if cache == nil {
			continue
		}
		var best time.Time
		for _, cert := range cache.AllMatchingCertificates(h) {
			leaf := cert.Leaf
			if leaf == nil && len(cert.Certificate.Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(cert.Certificate.Certificate[0])
			}
			if leaf != nil && leaf.NotAfter.After(best) {
				best = leaf.NotAfter
			}
		}
		if !best.IsZero() {
			out = append(out, Expiry{Host: h, Issuer: iss, NotAfter: best})
		}
	}
	return out
}
