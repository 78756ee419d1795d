package inventory

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// labelName is Kubernetes' qualified-name syntax without the prefix,
	// which label values share (values may also be empty).
	labelName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// hostLabel accepts underscores because ssh config aliases and some
	// internal DNS names use them.
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?$`)
)

// checkName validates a machine name; "" means valid.
func checkName(s string) string {
	switch {
	case len(s) > 63:
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	case !dnsLabel.MatchString(s):
		return fmt.Sprintf("must be lowercase letters, digits and '-', starting and ending with a letter or digit, got %q", s)
	}
	return ""
}

// checkLabelKey validates a label key: an optional DNS subdomain prefix and
// "/", then a name of up to 63 characters.
func checkLabelKey(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		name = rest
		switch {
		case prefix == "":
			return fmt.Sprintf("invalid label key %q: prefix before '/' must not be empty", k)
		case len(prefix) > 253:
			return fmt.Sprintf("invalid label key %q: prefix must be at most 253 characters", k)
		case !dnsSubdomain.MatchString(prefix):
			return fmt.Sprintf("invalid label key %q: prefix must be a lowercase DNS subdomain such as example.com", k)
		}
	}
	switch {
	case name == "":
		return fmt.Sprintf("invalid label key %q: name must not be empty", k)
	case len(name) > 63:
		return fmt.Sprintf("invalid label key %q: name must be at most 63 characters", k)
	case !labelName.MatchString(name):
		return fmt.Sprintf("invalid label key %q: name must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
	return ""
}

// checkLabelValue validates a label value, which may be empty.
func checkLabelValue(v string) string {
	switch {
	case v == "":
		return ""
	case len(v) > 63:
		return fmt.Sprintf("invalid label value %q: must be at most 63 characters", v)
	case !labelName.MatchString(v):
		return fmt.Sprintf("invalid label value %q: must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return ""
}

// checkAddress validates a machine address: a hostname or IP, nothing more.
func checkAddress(s string) string {
	switch {
	case strings.Contains(s, "://"):
		return fmt.Sprintf("must be a hostname or IP address without a scheme, got %q", s)
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return fmt.Sprintf("must not contain spaces, got %q", s)
	case strings.Contains(s, "@"):
		return fmt.Sprintf("must not include a user, got %q; set user instead", s)
	case strings.HasPrefix(s, "["):
		return fmt.Sprintf("write IPv6 addresses without brackets, got %q", s)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return ""
	}
	if strings.Contains(s, ":") {
		return fmt.Sprintf("must not include a port, got %q; set port instead", s)
	}
	if !isHostname(s) {
		return fmt.Sprintf("must be a hostname or IP address, got %q", s)
	}
	return ""
}

func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) > 63 || !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// checkJumpHost validates a proxyJump that is not a machine name:
// [user@]host[:port], one hop.
func checkJumpHost(s string) string {
	const form = "must be a machine name or [user@]host[:port]"
	switch {
	case strings.Contains(s, ","):
		return fmt.Sprintf("only one hop is supported, got %q; give each hop a machine entry and chain them by name", s)
	case strings.Contains(s, "://"):
		return fmt.Sprintf("%s, got %q", form, s)
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return fmt.Sprintf("must not contain spaces, got %q", s)
	}
	hostport := s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if i == 0 {
			return fmt.Sprintf("%s, got %q (empty user)", form, s)
		}
		hostport = s[i+1:]
	}
	host, port := hostport, ""
	switch {
	case strings.HasPrefix(hostport, "["):
		end := strings.Index(hostport, "]")
		if end < 0 {
			return fmt.Sprintf("%s, got %q (unclosed '[')", form, s)
		}
		host, port = hostport[1:end], hostport[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return fmt.Sprintf("%s, got %q", form, s)
			}
		}
	case strings.Count(hostport, ":") == 1:
		host, port, _ = strings.Cut(hostport, ":")
	}
	if host == "" {
		return fmt.Sprintf("%s, got %q (empty host)", form, s)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return fmt.Sprintf("%s, got %q (invalid host %q)", form, s, host)
	}
	if port != "" || strings.HasSuffix(hostport, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("%s, got %q (port must be between 1 and 65535)", form, s)
		}
	}
	return ""
}
