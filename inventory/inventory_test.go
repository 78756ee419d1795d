package inventory

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fullFile = `# fleet machines
apiVersion: fleet/v1
kind: Inventory
knownHosts: [known_hosts, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts]
defaults:
  user: root
  port: 22
  identityFile: id_ed25519
  agent: false
  capacity:
    memory: 4Gi
machines:
  - name: bastion
    address: bastion.example.com
    port: 2222
    agent: true
    labels: {role: bastion}
  - name: h1
    address: 10.1.2.3
    user: deploy
    identityFile: ~/.ssh/h1
    labels:
      zone: a
      example.com/tier: ""
    capacity:
      cpu: 500m
    proxyJump: bastion
  - name: h2
    address: "fd00::2"
    capacity: {cpu: "2", memory: 512Mi}
    proxyJump: admin@jump.example.com:2200
`

func TestParse_fullFile(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	name := filepath.Join(dir, "inventory.yaml")

	inv, err := Parse(name, []byte(fullFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Inventory{
		Path: name,
		KnownHosts: []string{
			filepath.Join(dir, "known_hosts"),
			filepath.Join(home, ".ssh/known_hosts"),
			"/etc/ssh/ssh_known_hosts",
		},
		Machines: []Machine{{
			Name:         "bastion",
			Address:      "bastion.example.com",
			Port:         2222,
			User:         "root",
			IdentityFile: filepath.Join(dir, "id_ed25519"),
			Agent:        true,
			Labels:       map[string]string{"role": "bastion"},
			Capacity:     Capacity{MemoryBytes: 4294967296},
			Line:         13,
		}, {
			Name:         "h1",
			Address:      "10.1.2.3",
			Port:         22,
			User:         "deploy",
			IdentityFile: filepath.Join(home, ".ssh/h1"),
			Labels:       map[string]string{"zone": "a", "example.com/tier": ""},
			Capacity:     Capacity{MilliCPU: 500, MemoryBytes: 4294967296},
			ProxyJump:    "bastion",
			Line:         18,
		}, {
			Name:         "h2",
			Address:      "fd00::2",
			Port:         22,
			User:         "root",
			IdentityFile: filepath.Join(dir, "id_ed25519"),
			Labels:       map[string]string{},
			Capacity:     Capacity{MilliCPU: 2000, MemoryBytes: 512 << 20},
			ProxyJump:    "admin@jump.example.com:2200",
			Line:         28,
		}},
	}
	if !reflect.DeepEqual(inv, want) {
		t.Errorf("Parse mismatch\n got: %+v\nwant: %+v", inv, want)
	}
}

func TestParse_valid(t *testing.T) {
	tests := []struct {
		name  string
		input string
		check func(t *testing.T, inv *Inventory)
	}{
		{
			name:  "a minimal file needs only machines",
			input: "machines:\n- {name: h1, address: h1.local}\n",
			check: func(t *testing.T, inv *Inventory) {
				m := inv.Machines[0]
				if m.Port != 0 || m.User != "" || m.IdentityFile != "" || m.Labels == nil {
					t.Errorf("want unset fields and non-nil labels, got %+v", m)
				}
			},
		},
		{
			name: "a default proxyJump skips the machine it names and yields to none",
			input: `defaults: {proxyJump: bastion}
machines:
- {name: bastion, address: 192.0.2.1}
- {name: h1, address: 10.0.0.1}
- {name: h2, address: 192.0.2.2, proxyJump: none}
`,
			check: func(t *testing.T, inv *Inventory) {
				var got []string
				for _, m := range inv.Machines {
					got = append(got, m.ProxyJump)
				}
				if want := []string{"", "bastion", ""}; !reflect.DeepEqual(got, want) {
					t.Errorf("proxyJumps = %q, want %q", got, want)
				}
			},
		},
		{
			name: "a chain of jumps by name is allowed",
			input: `machines:
- {name: a, address: a.local}
- {name: b, address: b.local, proxyJump: a}
- {name: c, address: c.local, proxyJump: b}
`,
			check: func(t *testing.T, inv *Inventory) {
				if got := inv.Machines[2].ProxyJump; got != "b" {
					t.Errorf("c.ProxyJump = %q, want b", got)
				}
			},
		},
		{
			name: "merge keys and a trailing document marker are accepted",
			input: `---
machines:
- &base {name: h1, address: h1.local, port: 2200}
- {<<: *base, name: h2}
---
`,
			check: func(t *testing.T, inv *Inventory) {
				if got := inv.Machines[1]; got.Name != "h2" || got.Address != "h1.local" || got.Port != 2200 {
					t.Errorf("merged machine = %+v", got)
				}
			},
		},
		{
			name:  "explicit port 0 means unset and lets the default apply",
			input: "defaults: {port: 2222}\nmachines:\n- {name: h1, address: h1.local, port: 0}\n",
			check: func(t *testing.T, inv *Inventory) {
				if got := inv.Machines[0].Port; got != 2222 {
					t.Errorf("Port = %d, want 2222", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse("inventory.yaml", []byte(tt.input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, inv)
		})
	}
}

func TestParse_invalid(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name:  "a port above 65535 is rejected",
			input: "machines:\n- name: h0\n  address: h0.local\n- name: h1\n  address: h1.local\n  port: 70000\n",
			want:  "inventory.yaml:6: machines[1].port: must be between 1 and 65535, got 70000",
		},
		{
			name:  "an unknown machine field lists the known ones",
			input: "machines:\n- name: h1\n  address: h1.local\n  colour: red\n",
			want:  "inventory.yaml:4: machines[0].colour: unknown field (known: name, address, port, user, identityFile, agent, labels, capacity, proxyJump)",
		},
		{
			name:  "a miscased field suggests the right spelling",
			input: "machines:\n- name: h1\n  address: h1.local\n  identityfile: id\n",
			want:  "inventory.yaml:4: machines[0].identityfile: unknown field, did you mean identityFile? (known: name, address, port, user, identityFile, agent, labels, capacity, proxyJump)",
		},
		{
			name:  "a non-integer port is a type error",
			input: "machines:\n- name: h1\n  address: h1.local\n  port: abc\n",
			want:  `inventory.yaml:4: machines[0].port: expected an integer, got "abc"`,
		},
		{
			name:  "a non-boolean agent is a type error",
			input: "machines:\n- name: h1\n  address: h1.local\n  agent: yes\n",
			want:  `inventory.yaml:4: machines[0].agent: expected true or false, got "yes"`,
		},
		{
			name:  "a malformed cpu quantity is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  capacity:\n    cpu: two\n",
			want:  `inventory.yaml:5: machines[0].capacity.cpu: invalid quantity "two" (examples: "500m", "2")`,
		},
		{
			name:  "a memory quantity in GB suggests G or Gi",
			input: "machines:\n- name: h1\n  address: h1.local\n  capacity: {memory: 4GB}\n",
			want:  `inventory.yaml:4: machines[0].capacity.memory: invalid quantity "4GB", did you mean "4G" or "4Gi"? (examples: "512Mi", "4Gi")`,
		},
		{
			name:  "a zero cpu quantity is rejected",
			input: "defaults:\n  capacity:\n    cpu: \"0\"\nmachines:\n- {name: h1, address: h1.local}\n",
			want:  `inventory.yaml:3: defaults.capacity.cpu: must be greater than 0, got "0"`,
		},
		{
			name:  "a duplicate name points at the first",
			input: "machines:\n- name: h1\n  address: a.local\n- name: h1\n  address: b.local\n",
			want:  `inventory.yaml:4: machines[1].name: duplicate name "h1" (first at line 2)`,
		},
		{
			name:  "a missing address is reported at the entry",
			input: "machines:\n- name: h1\n  port: 22\n",
			want:  "inventory.yaml:2: machines[0].address: required",
		},
		{
			name:  "an empty name is required",
			input: "machines:\n- name: \"\"\n  address: h1.local\n",
			want:  "inventory.yaml:2: machines[0].name: required",
		},
		{
			name:  "an uppercase name is not a DNS label",
			input: "machines:\n- name: Web_1\n  address: h1.local\n",
			want:  `inventory.yaml:2: machines[0].name: must be lowercase letters, digits and '-', starting and ending with a letter or digit, got "Web_1"`,
		},
		{
			name:  "an unknown top-level key is rejected",
			input: "machines:\n- {name: h1, address: h1.local}\nhosts: []\n",
			want:  "inventory.yaml:3: hosts: unknown field (known: apiVersion, kind, knownHosts, defaults, machines)",
		},
		{
			name:  "a YAML syntax error keeps its line",
			input: "machines:\n- name: h1\n  address: h1.local\n   port: 22\n",
			want:  "inventory.yaml:4: invalid YAML: mapping values are not allowed in this context",
		},
		{
			name:  "a second document is rejected",
			input: "machines:\n- {name: h1, address: h1.local}\n---\nmachines: []\n",
			want:  "inventory.yaml:4: a second YAML document starts here; an inventory is one document",
		},
		{
			name:  "an empty machines list is rejected",
			input: "apiVersion: fleet/v1\nmachines: []\n",
			want:  "inventory.yaml:2: machines: no machines; list at least one",
		},
		{
			name:  "a missing machines key is rejected",
			input: "apiVersion: fleet/v1\n",
			want:  "inventory.yaml:1: machines: no machines; list at least one under machines:",
		},
		{
			name:  "an empty file is rejected",
			input: "# nothing yet\n",
			want:  "inventory.yaml: machines: no machines; the file is empty",
		},
		{
			name:  "a wrong apiVersion is rejected",
			input: "apiVersion: fleet/v2\nmachines:\n- {name: h1, address: h1.local}\n",
			want:  `inventory.yaml:1: apiVersion: must be "fleet/v1", got "fleet/v2"`,
		},
		{
			name:  "a wrong kind is rejected",
			input: "kind: Machines\nmachines:\n- {name: h1, address: h1.local}\n",
			want:  `inventory.yaml:1: kind: must be "Inventory", got "Machines"`,
		},
		{
			name:  "an address with a port is rejected",
			input: "machines:\n- name: h1\n  address: 10.0.0.1:22\n",
			want:  `inventory.yaml:3: machines[0].address: must not include a port, got "10.0.0.1:22"; set port instead`,
		},
		{
			name:  "an address with a scheme is rejected",
			input: "machines:\n- name: h1\n  address: ssh://h1.local\n",
			want:  `inventory.yaml:3: machines[0].address: must be a hostname or IP address without a scheme, got "ssh://h1.local"`,
		},
		{
			name:  "a machine jumping through itself is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  proxyJump: h1\n",
			want:  "inventory.yaml:4: machines[0].proxyJump: a machine may not jump through itself",
		},
		{
			name:  "a proxyJump cycle is reported once at its first member",
			input: "machines:\n- {name: a, address: a.local, proxyJump: c}\n- {name: b, address: b.local, proxyJump: a}\n- {name: c, address: c.local, proxyJump: b}\n",
			want:  "inventory.yaml:2: machines[0].proxyJump: proxyJump cycle: a -> c -> b -> a",
		},
		{
			name:  "a proxyJump with a bad port is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  proxyJump: admin@jump:99999\n",
			want:  `inventory.yaml:4: machines[0].proxyJump: must be a machine name or [user@]host[:port], got "admin@jump:99999" (port must be between 1 and 65535)`,
		},
		{
			name:  "a label key with a space is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  labels:\n    my zone: a\n",
			want:  `inventory.yaml:5: machines[0].labels[my zone]: invalid label key "my zone": name must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
		},
		{
			name:  "a label value over 63 characters is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  labels:\n    zone: " + strings.Repeat("a", 64) + "\n",
			want:  `inventory.yaml:5: machines[0].labels[zone]: invalid label value "` + strings.Repeat("a", 64) + `": must be at most 63 characters`,
		},
		{
			name:  "a duplicate key points at the first",
			input: "machines:\n- name: h1\n  address: h1.local\n  name: h2\n",
			want:  "inventory.yaml:4: machines[0].name: duplicate key (first at line 2)",
		},
		{
			name:  "labels are not allowed in defaults",
			input: "defaults:\n  labels: {zone: a}\nmachines:\n- {name: h1, address: h1.local}\n",
			want:  "inventory.yaml:2: defaults.labels: not allowed in defaults; set it on each machine",
		},
		{
			name:  "knownHosts must be a list",
			input: "knownHosts: known_hosts\nmachines:\n- {name: h1, address: h1.local}\n",
			want:  `inventory.yaml:1: knownHosts: expected a list of file paths, got "known_hosts"`,
		},
		{
			name:  "a machine entry must be a mapping",
			input: "machines:\n- h1.local\n",
			want:  `inventory.yaml:2: machines[0]: expected a mapping with name and address, got "h1.local"`,
		},
		{
			name:  "a port too large for any integer is out of range",
			input: "machines:\n- name: h1\n  address: h1.local\n  port: 99999999999999999999\n",
			want:  "inventory.yaml:4: machines[0].port: 99999999999999999999 is out of range",
		},
		{
			name:  "a ~user path is rejected",
			input: "machines:\n- name: h1\n  address: h1.local\n  identityFile: ~bob/.ssh/id\n",
			want:  `inventory.yaml:4: machines[0].identityFile: ~user is not supported, got "~bob/.ssh/id"; write the full path`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse("inventory.yaml", []byte(tt.input))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error %q", inv, tt.want)
			}
			if inv != nil {
				t.Errorf("Parse returned an inventory along with an error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestParse_reportsEveryProblem(t *testing.T) {
	input := `machines:
- name: h1
  address: h1.local
  port: 70000
- name: h1
  address: h2.local
  capacity: {memory: lots}
`
	_, err := Parse("inventory.yaml", []byte(input))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v (%T) is not an ErrorList", err, err)
	}
	want := []string{
		"inventory.yaml:4: machines[0].port: must be between 1 and 65535, got 70000",
		`inventory.yaml:5: machines[1].name: duplicate name "h1" (first at line 2)`,
		`inventory.yaml:7: machines[1].capacity.memory: invalid quantity "lots" (examples: "512Mi", "4Gi")`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got: %q\nwant: %q", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 4 || fe.Field != "machines[0].port" {
		t.Errorf("errors.As(*FieldError) = %+v, want the port error", fe)
	}
}

func TestParse_stdin(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := Parse("-", []byte("machines:\n- {name: h1, address: h1.local, identityFile: id}\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if inv.Path != "" {
		t.Errorf("Path = %q, want empty", inv.Path)
	}
	if want := filepath.Join(wd, "id"); inv.Machines[0].IdentityFile != want {
		t.Errorf("IdentityFile = %q, want %q", inv.Machines[0].IdentityFile, want)
	}
	_, err = Parse("-", []byte("machines: []\n"))
	if want := "<stdin>:1: machines: no machines; list at least one"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		wantErr string  // substring; "" means success
	}{
		{
			name:    "a missing file suggests how to get one",
			wantErr: "fleet sandbox up",
		},
		{
			name:    "an existing file loads",
			content: ptr("machines:\n- {name: h1, address: h1.local, identityFile: keys/id}\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "inventory.yaml")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			inv, err := Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error = %v, want it to name %s and mention %q", err, path, tt.wantErr)
				}
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error does not match fs.ErrNotExist")
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if inv.Path != path {
				t.Errorf("Path = %q, want %q", inv.Path, path)
			}
			if want := filepath.Join(dir, "keys/id"); inv.Machines[0].IdentityFile != want {
				t.Errorf("IdentityFile = %q, want %q", inv.Machines[0].IdentityFile, want)
			}
		})
	}
}

func TestInventory_Machine(t *testing.T) {
	inv := &Inventory{Machines: []Machine{{Name: "h1"}, {Name: "h2", Address: "10.0.0.2"}}}
	tests := []struct {
		name     string
		lookup   string
		wantAddr string
		wantOK   bool
	}{
		{name: "a listed machine is found", lookup: "h2", wantAddr: "10.0.0.2", wantOK: true},
		{name: "an unlisted machine is not found", lookup: "h3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := inv.Machine(tt.lookup)
			if ok != tt.wantOK || m.Address != tt.wantAddr {
				t.Errorf("Machine(%q) = %+v, %v", tt.lookup, m, ok)
			}
		})
	}
}

func TestInventory_Names(t *testing.T) {
	inv := &Inventory{Machines: []Machine{{Name: "b"}, {Name: "a"}}}
	if got, want := inv.Names(), []string{"b", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestMachine_SSHAddress(t *testing.T) {
	tests := []struct {
		name string
		m    Machine
		want string
	}{
		{name: "an unset port means 22", m: Machine{Address: "h1.local"}, want: "h1.local:22"},
		{name: "a set port is used", m: Machine{Address: "10.0.0.1", Port: 2222}, want: "10.0.0.1:2222"},
		{name: "an IPv6 address is bracketed", m: Machine{Address: "fd00::1"}, want: "[fd00::1]:22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.SSHAddress(); got != tt.want {
				t.Errorf("SSHAddress() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFieldError_Error(t *testing.T) {
	tests := []struct {
		name string
		err  FieldError
		want string
	}{
		{name: "all parts are shown", err: FieldError{File: "f", Line: 3, Field: "machines[0].port", Msg: "bad"}, want: "f:3: machines[0].port: bad"},
		{name: "a missing field is left out", err: FieldError{File: "f", Line: 3, Msg: "bad"}, want: "f:3: bad"},
		{name: "a missing line is left out", err: FieldError{File: "f", Field: "machines", Msg: "bad"}, want: "f: machines: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullFile))
	f.Add([]byte("machines:\n- &m {name: a, <<: *m, proxyJump: b}\n- {name: b, address: b.local, proxyJump: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("inventory.yaml", data)
		if (inv == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v; want exactly one of them", inv, err)
		}
	})
}

func ptr[T any](v T) *T { return &v }
