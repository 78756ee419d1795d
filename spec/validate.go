package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"unicode"
)

// The name syntaxes Kubernetes uses, from k8s.io/apimachinery's validation
// package (written out here to keep spec's imports to the quantity parser).
var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1035Label = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// qualifiedName is a label key without its prefix; label values share
	// it (values may also be empty).
	qualifiedName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	portName      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	hasLetter     = regexp.MustCompile(`[a-z]`)
)

const (
	labelRule     = "lowercase letters, digits and '-', starting and ending with a letter or digit"
	subdomainRule = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
)

// checkDNSLabel validates container and namespace names; "" means valid.
func checkDNSLabel(s string) string {
	switch {
	case len(s) > 63:
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	case !dnsLabel.MatchString(s):
		return fmt.Sprintf("must be %s, got %q", labelRule, s)
	}
	return ""
}

// checkDNS1035Label validates Service names, which become DNS names and so
// must start with a letter.
func checkDNS1035Label(s string) string {
	switch {
	case len(s) > 63:
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	case !dns1035Label.MatchString(s):
		return fmt.Sprintf("must be lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, got %q", s)
	}
	return ""
}

// checkDNSSubdomain validates object names.
func checkDNSSubdomain(s string) string {
	switch {
	case len(s) > 253:
		return fmt.Sprintf("must be at most 253 characters, got %d", len(s))
	case !dnsSubdomain.MatchString(s):
		return fmt.Sprintf("must be %s, got %q", subdomainRule, s)
	}
	return ""
}

// checkLabelKey validates a label or annotation key: an optional DNS
// subdomain prefix and "/", then a name of up to 63 characters.
func checkLabelKey(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		name = rest
		switch {
		case prefix == "":
			return fmt.Sprintf("invalid key %q: prefix before '/' must not be empty", k)
		case len(prefix) > 253:
			return fmt.Sprintf("invalid key %q: prefix must be at most 253 characters", k)
		case !dnsSubdomain.MatchString(prefix):
			return fmt.Sprintf("invalid key %q: prefix must be a lowercase DNS subdomain such as example.com", k)
		}
	}
	switch {
	case name == "":
		return fmt.Sprintf("invalid key %q: name must not be empty", k)
	case len(name) > 63:
		return fmt.Sprintf("invalid key %q: name must be at most 63 characters", k)
	case !qualifiedName.MatchString(name):
		return fmt.Sprintf("invalid key %q: name must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
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
	case !qualifiedName.MatchString(v):
		return fmt.Sprintf("invalid label value %q: must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return ""
}

// anyValue accepts every annotation value.
func anyValue(string) string { return "" }

// checkPortName validates an IANA service name, the syntax of port names.
func checkPortName(s string) string {
	switch {
	case len(s) > 15:
		return fmt.Sprintf("port name %q must be at most 15 characters", s)
	case !portName.MatchString(s) || strings.Contains(s, "--"):
		return fmt.Sprintf("port name %q must be lowercase letters, digits and single '-', starting and ending with a letter or digit", s)
	case !hasLetter.MatchString(s):
		return fmt.Sprintf("port name %q must contain a letter", s)
	}
	return ""
}

// checkImage does the checks that need no registry.
func checkImage(s string) string {
	switch {
	case strings.TrimSpace(s) != s || strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return fmt.Sprintf("must not contain spaces, got %q", s)
	case strings.Contains(s, "://"):
		return fmt.Sprintf("must be an image reference such as nginx:1.27 or registry.example.com/team/app:v2, without a scheme, got %q", s)
	case strings.HasSuffix(s, ":") || strings.HasSuffix(s, "@"):
		return fmt.Sprintf("ends with %q but has no tag or digest, got %q", s[len(s)-1:], s)
	}
	if path := imagePath(s); path != strings.ToLower(path) {
		return fmt.Sprintf("repository %q must be lowercase", path)
	}
	return ""
}

// imagePath is the repository path of an image reference: without
// registry host, tag and digest.
func imagePath(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	if host, path, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		return path
	}
	return ref
}

// defaultPullPolicy is Kubernetes' rule: images with the "latest" tag, or
// with neither tag nor digest, are pulled every time.
func defaultPullPolicy(image string) string {
	ref, _, hasDigest := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	if tag == "latest" || tag == "" && !hasDigest {
		return PullAlways
	}
	return PullIfNotPresent
}

// checkClusterIP accepts "", "None" and IP addresses.
func checkClusterIP(s string) string {
	if s == "" || s == "None" {
		return ""
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Sprintf("must be an IP address or None, got %q", s)
	}
	return ""
}
