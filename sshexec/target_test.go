package sshexec

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kevinburke/ssh_config"

	"github.com/fleetdev/fleet/inventory"
)

func decodeSSHConfig(t *testing.T, text string) SSHConfig {
	t.Helper()
	cfg, err := ssh_config.Decode(strings.NewReader(text))
	if err != nil {
		t.Fatalf("decode ssh config: %v", err)
	}
	return cfg
}

func TestResolve(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}

	const sshConfig = `
Host web1
  Port 2201
  User webuser
  IdentityFile ~/.ssh/web1

Host 10.0.0.9
  Port 2209
  User byaddress
  IdentityFile /keys/by-address

Host portless
  User nobody-port

Host badport
  Port http
`
	tests := []struct {
		name      string
		inventory string
		machine   string
		sshConfig string // "" means no ~/.ssh/config
		want      Target
	}{
		{
			name:      "inventory values win over ~/.ssh/config",
			inventory: "machines:\n- {name: web1, address: 10.0.0.1, port: 22, user: deploy, identityFile: /keys/deploy}\n",
			machine:   "web1",
			sshConfig: sshConfig,
			want:      Target{Name: "web1", Host: "10.0.0.1", Port: 22, User: "deploy", IdentityFile: "/keys/deploy"},
		},
		{
			name:      "missing values come from the Host entry matching the machine name",
			inventory: "machines:\n- {name: web1, address: 10.0.0.1}\n",
			machine:   "web1",
			sshConfig: sshConfig,
			want:      Target{Name: "web1", Host: "10.0.0.1", Port: 2201, User: "webuser", IdentityFile: filepath.Join(home, ".ssh/web1")},
		},
		{
			name:      "missing values come from the Host entry matching the address when the name has none",
			inventory: "machines:\n- {name: db, address: 10.0.0.9}\n",
			machine:   "db",
			sshConfig: sshConfig,
			want:      Target{Name: "db", Host: "10.0.0.9", Port: 2209, User: "byaddress", IdentityFile: "/keys/by-address"},
		},
		{
			name:      "the inventory fills some values and the config the rest",
			inventory: "machines:\n- {name: web1, address: 10.0.0.1, user: deploy}\n",
			machine:   "web1",
			sshConfig: sshConfig,
			want:      Target{Name: "web1", Host: "10.0.0.1", Port: 2201, User: "deploy", IdentityFile: filepath.Join(home, ".ssh/web1")},
		},
		{
			name:      "without a config the port is 22 and the user is the local user",
			inventory: "machines:\n- {name: web1, address: 10.0.0.1}\n",
			machine:   "web1",
			want:      Target{Name: "web1", Host: "10.0.0.1", Port: 22, User: local},
		},
		{
			name:      "a Host entry without a port leaves the default 22",
			inventory: "machines:\n- {name: portless, address: 10.0.0.2}\n",
			machine:   "portless",
			sshConfig: sshConfig,
			want:      Target{Name: "portless", Host: "10.0.0.2", Port: 22, User: "nobody-port"},
		},
		{
			name:      "agent is carried from the inventory",
			inventory: "machines:\n- {name: a, address: 10.0.0.3, user: u, agent: true}\n",
			machine:   "a",
			want:      Target{Name: "a", Host: "10.0.0.3", Port: 22, User: "u", Agent: true},
		},
		{
			name:      "a proxyJump naming another machine jumps through it, resolved in turn",
			inventory: "machines:\n- {name: bastion, address: 10.0.0.1, port: 2222, user: jumper}\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: bastion}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "bastion", Host: "10.0.0.1", Port: 2222, User: "jumper"}},
		},
		{
			name:      "a jump machine also takes missing values from ~/.ssh/config",
			inventory: "machines:\n- {name: web1, address: 10.0.0.1}\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: web1}\n",
			machine:   "inner",
			sshConfig: sshConfig,
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "web1", Host: "10.0.0.1", Port: 2201, User: "webuser", IdentityFile: filepath.Join(home, ".ssh/web1")}},
		},
		{
			name:      "a user@host:port proxyJump is parsed",
			inventory: "machines:\n- {name: inner, address: 192.168.1.5, user: deploy, identityFile: /keys/id, proxyJump: admin@jump.example.com:2222}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy", IdentityFile: "/keys/id",
				Jump: &Target{Name: "admin@jump.example.com:2222", Host: "jump.example.com", Port: 2222, User: "admin", IdentityFile: "/keys/id"}},
		},
		{
			name:      "a proxyJump user ends at the last @",
			inventory: "machines:\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: \"ops@corp@jump.example.com\"}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "ops@corp@jump.example.com", Host: "jump.example.com", Port: 22, User: "ops@corp"}},
		},
		{
			name:      "a bare host proxyJump takes port 22 and the machine's user",
			inventory: "machines:\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: jump.example.com}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "jump.example.com", Host: "jump.example.com", Port: 22, User: "deploy"}},
		},
		{
			name:      "a bracketed IPv6 proxyJump with a port is parsed",
			inventory: "machines:\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: \"[fd00::1]:2200\"}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "[fd00::1]:2200", Host: "fd00::1", Port: 2200, User: "deploy"}},
		},
		{
			name:      "a bracketed IPv6 proxyJump without a port loses its brackets",
			inventory: "machines:\n- {name: inner, address: 192.168.1.5, user: deploy, proxyJump: \"ops@[fd00::1]\"}\n",
			machine:   "inner",
			want: Target{Name: "inner", Host: "192.168.1.5", Port: 22, User: "deploy",
				Jump: &Target{Name: "ops@[fd00::1]", Host: "fd00::1", Port: 22, User: "ops"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := inventory.Parse(filepath.Join(t.TempDir(), "inventory.yaml"), []byte(tt.inventory))
			if err != nil {
				t.Fatalf("parse inventory: %v", err)
			}
			m, ok := inv.Machine(tt.machine)
			if !ok {
				t.Fatalf("no machine %s", tt.machine)
			}
			var cfg SSHConfig
			if tt.sshConfig != "" {
				cfg = decodeSSHConfig(t, tt.sshConfig)
			}
			got, err := Resolve(inv, m, cfg)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !sameTarget(got, &tt.want) {
				t.Errorf("Resolve =\n  %s\nwant\n  %s", describeTarget(got), describeTarget(&tt.want))
			}
		})
	}
}

func TestResolve_errors(t *testing.T) {
	tests := []struct {
		name      string
		inv       *inventory.Inventory
		machine   string
		sshConfig string
		want      string
	}{
		{
			name: "a proxyJump loop is an error",
			inv: &inventory.Inventory{Machines: []inventory.Machine{
				{Name: "a", Address: "a.local", ProxyJump: "b"},
				{Name: "b", Address: "b.local", ProxyJump: "c"},
				{Name: "c", Address: "c.local", ProxyJump: "a"},
			}},
			machine: "a",
			want:    "loops",
		},
		{
			name: "a machine jumping through itself is an error",
			inv: &inventory.Inventory{Machines: []inventory.Machine{
				{Name: "a", Address: "a.local", ProxyJump: "a"},
			}},
			machine: "a",
			want:    "loops",
		},
		{
			name: "a proxyJump with a bad port is an error",
			inv: &inventory.Inventory{Machines: []inventory.Machine{
				{Name: "a", Address: "a.local", ProxyJump: "jump:http"},
			}},
			machine: "a",
			want:    "bad port",
		},
		{
			name: "a proxyJump without a host is an error",
			inv: &inventory.Inventory{Machines: []inventory.Machine{
				{Name: "a", Address: "a.local", ProxyJump: "ops@:22"},
			}},
			machine: "a",
			want:    "no host",
		},
		{
			name: "a Port in ~/.ssh/config that is not a number is an error",
			inv: &inventory.Inventory{Machines: []inventory.Machine{
				{Name: "badport", Address: "10.0.0.1"},
			}},
			machine:   "badport",
			sshConfig: "Host badport\n  Port http\n",
			want:      `Port "http" is not a port`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := tt.inv.Machine(tt.machine)
			var cfg SSHConfig
			if tt.sshConfig != "" {
				cfg = decodeSSHConfig(t, tt.sshConfig)
			}
			_, err := Resolve(tt.inv, m, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Resolve: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestTarget_Address(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		want string
	}{
		{"a hostname and port are joined", Target{Host: "web1.example.com", Port: 22}, "web1.example.com:22"},
		{"an IPv4 address is not bracketed", Target{Host: "10.0.0.1", Port: 2222}, "10.0.0.1:2222"},
		{"an IPv6 address is bracketed", Target{Host: "fd00::2", Port: 22}, "[fd00::2]:22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.Address(); got != tt.want {
				t.Errorf("Address = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadSSHConfig(t *testing.T) {
	t.Run("a missing file is no config", func(t *testing.T) {
		cfg, err := LoadSSHConfig(filepath.Join(t.TempDir(), "config"))
		if err != nil || cfg != nil {
			t.Errorf("LoadSSHConfig = %v, %v; want nil, nil", cfg, err)
		}
	})
	t.Run("a file is parsed and answers look-ups", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(path, []byte("Host web1\n  User webuser\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadSSHConfig(path)
		if err != nil {
			t.Fatalf("LoadSSHConfig: %v", err)
		}
		if got, _ := cfg.Get("web1", "User"); got != "webuser" {
			t.Errorf("User = %q, want webuser", got)
		}
	})
}

func sameTarget(a, b *Target) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Name == b.Name && a.Host == b.Host && a.Port == b.Port && a.User == b.User &&
		a.IdentityFile == b.IdentityFile && a.Agent == b.Agent && sameTarget(a.Jump, b.Jump)
}

func describeTarget(t *Target) string {
	if t == nil {
		return "<nil>"
	}
	s := strings.Join([]string{"name=" + t.Name, "addr=" + t.Address(), "user=" + t.User, "identity=" + t.IdentityFile}, " ")
	if t.Agent {
		s += " agent"
	}
	if t.Jump != nil {
		s += " via {" + describeTarget(t.Jump) + "}"
	}
	return s
}
