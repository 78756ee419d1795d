package probe

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

// UserAgent is sent by httpGet probes unless the probe sets its own.
const UserAgent = "fleet-probe/1.0"

// maxBody is how much of a response body an httpGet probe reads, as
// kubelet: enough to finish a small response, never a large one.
const maxBody = 10 << 10

func (r *Runner) httpGet(ctx context.Context, a *spec.HTTPGetAction, t Target) Result {
	var scheme string
	switch strings.ToUpper(a.Scheme) {
	case "", "HTTP":
		scheme = "http"
	case "HTTPS":
		scheme = "https"
	default:
		return failf("unsupported scheme %q", a.Scheme)
	}
	addr, err := address(a.Port, t)
	if err != nil {
		return failf("%v", err)
	}
	if r.Dial == nil {
		return failf("no dialer for %s", addr)
	}
	u := probeURL(scheme, addr, a.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return failf("%v", err)
	}
	for _, h := range a.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}

	machine := t.Machine
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return r.Dial(ctx, machine, network, addr)
		},
		// The container's address is only reachable through the
		// machine: never through a proxy from our environment.
		Proxy: nil,
		// kubelet does not verify probe certificates.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		// A probe must not hold connections open on the machine.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{
		Transport: tr,
		// Never follow: a redirect is a success, as kubelet counts
		// redirects to other hosts.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		return failf("%v", err)
	}
	defer resp.Body.Close()
	if _, err := io.CopyN(io.Discard, resp.Body, maxBody); err != nil && err != io.EOF {
		return failf("read response of %s: %v", u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return failf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return ok()
}

// probeURL is kubelet's: the path may carry a query; a path that does not
// parse is passed along as is.
func probeURL(scheme, addr, path string) *url.URL {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(path)
	if err != nil {
		u = &url.URL{Path: path}
	}
	u.Scheme = scheme
	u.Host = addr
	return u
}
