package sshexec

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"

	"github.com/fleetdev/fleet/inventory"
)

// Target is everything needed to reach one machine, after the inventory,
// ~/.ssh/config and defaults have been combined.
type Target struct {
	Name         string
	Host         string
	Port         int
	User         string
	IdentityFile string
	Agent        bool
	Jump         *Target // nil: dial directly
}

// Address is host:port as dialled and as keys are pinned.
func (t *Target) Address() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// SSHConfig answers ~/.ssh/config look-ups; nil means none.
type SSHConfig interface {
	Get(alias, key string) (string, error)
}

// LoadSSHConfig reads an OpenSSH client config file; a missing file is no
// config, not an error.
func LoadSSHConfig(path string) (SSHConfig, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return cfg, nil
}

// DefaultSSHConfigPath is ~/.ssh/config.
func DefaultSSHConfigPath() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh", "config")
}

// Resolve combines an inventory machine with ~/.ssh/config (Host entries
// matched by machine name, then address) for what the inventory leaves
// out, then OpenSSH's defaults: port 22 and the local user name.
func Resolve(inv *inventory.Inventory, m inventory.Machine, cfg SSHConfig) (*Target, error) {
	return resolve(inv, m, cfg, map[string]bool{})
}

func resolve(inv *inventory.Inventory, m inventory.Machine, cfg SSHConfig, seen map[string]bool) (*Target, error) {
	if seen[m.Name] {
		return nil, fmt.Errorf("machine %s: proxyJump loops back to itself", m.Name)
	}
	seen[m.Name] = true
	t := &Target{Name: m.Name, Host: m.Address, Port: m.Port, User: m.User, IdentityFile: m.IdentityFile, Agent: m.Agent}
	lookup := func(key string) string {
		if cfg == nil {
			return ""
		}
		for _, alias := range []string{m.Name, m.Address} {
			if v, err := cfg.Get(alias, key); err == nil && v != "" {
				return v
			}
		}
		return ""
	}
	if t.Port == 0 {
		if v := lookup("Port"); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("machine %s: ~/.ssh/config Port %q is not a port", m.Name, v)
			}
			t.Port = p
		} else {
			t.Port = 22
		}
	}
	if t.User == "" {
		t.User = lookup("User")
	}
	if t.User == "" {
		if u, err := user.Current(); err == nil {
			t.User = u.Username
		}
	}
	if t.IdentityFile == "" {
		if v := lookup("IdentityFile"); v != "" {
			t.IdentityFile = expandHome(v)
		}
	}
	if m.ProxyJump != "" {
		if jm, ok := inv.Machine(m.ProxyJump); ok {
			j, err := resolve(inv, jm, cfg, seen)
			if err != nil {
				return nil, err
			}
			t.Jump = j
		} else {
			j, err := parseJump(m.ProxyJump, t)
			if err != nil {
				return nil, fmt.Errorf("machine %s: proxyJump: %w", m.Name, err)
			}
			t.Jump = j
		}
	}
	return t, nil
}

// parseJump reads [user@]host[:port]; what it leaves out comes from the
// machine being reached through it.
func parseJump(s string, via *Target) (*Target, error) {
	j := &Target{Name: s, User: via.User, Port: 22, IdentityFile: via.IdentityFile, Agent: via.Agent}
	// The last @ ends the user, as the inventory's validation reads it.
	if i := strings.LastIndex(s, "@"); i >= 0 {
		j.User, s = s[:i], s[i+1:]
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: an IPv6 address may still be bracketed.
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	} else {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q has a bad port", s)
		}
		j.Port = p
	}
	if host == "" {
		return nil, fmt.Errorf("%q has no host", s)
	}
	j.Host = host
	return j, nil
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		home, _ := os.UserHomeDir()
		return filepath.Join(home, p[2:])
	}
	return p
}
