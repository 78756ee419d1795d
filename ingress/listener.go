package ingress

import (
	"crypto/tls"
	"net"
)

// newTLSListener wraps ln so that http.Server serves HTTPS (with HTTP/2
// when the client offers it, as http.Server does for *tls.Conn).
func newTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return tls.NewListener(ln, cfg)
}
