// Package inventory loads and validates fleet's machines file: the list of
// plain Docker hosts fleet reaches over SSH, with their connection settings,
// labels and optional capacity overrides.
//
// Parsing walks the YAML node tree instead of decoding into structs so that
// every problem in a file is reported in one pass, each with its line and
// field path.
package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
)

// APIVersion is the only apiVersion an inventory file may declare.
const APIVersion = "fleet/v1"

// Kind is the only kind an inventory file may declare.
const Kind = "Inventory"

// Inventory is a loaded and validated machines file.
type Inventory struct {
	// Path is the absolute path of the file the inventory was loaded from,
	// or "" when it was parsed from standard input (name "-").
	Path string
	// KnownHosts lists known_hosts files as absolute paths, in file order.
	// Empty means the SSH layer picks its own default.
	KnownHosts []string
	// Machines are in file order with defaults already applied.
	Machines []Machine
}

// Machine is one host fleet manages.
type Machine struct {
	// Name identifies the machine within the inventory; a DNS label.
	Name string
	// Address is a hostname or IP address, without port or brackets.
	Address string
	// Port is the SSH port; 0 means unset, leaving the choice to the SSH
	// layer (ssh config, then 22).
	Port int
	// User is the SSH user; "" means unset.
	User string
	// IdentityFile is the absolute path of the private key; "" means unset.
	IdentityFile string
	// Agent asks the SSH layer to use ssh-agent via SSH_AUTH_SOCK.
	// Default false.
	Agent bool
	// Labels are free-form Kubernetes-style labels used for placement.
	// Never nil for machines returned by Parse or Load.
	Labels map[string]string
	// Capacity overrides what Docker reports; zero fields mean no override.
	Capacity Capacity
	// ProxyJump is the name of another machine in the inventory or a
	// [user@]host[:port] to jump through; "" means connect directly.
	ProxyJump string
	// Line is the line of the machine's entry in the file, for messages.
	Line int
}

// Capacity is the schedulable capacity of a machine.
type Capacity struct {
	// MilliCPU is in thousandths of a CPU; 0 means use what Docker reports.
	MilliCPU int64
	// MemoryBytes is in bytes; 0 means use what Docker reports.
	MemoryBytes int64
}

// Load reads and parses the inventory file at path. A missing file is
// reported with a hint on how to create or select one; the error still
// matches fs.ErrNotExist.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read inventory: %w (run `fleet sandbox up` to create a local one, or point --inventory or FLEET_INVENTORY at an existing file)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates inventory data. name is used in error messages
// and relative paths in the file resolve against its directory; name "-"
// means standard input, whose relative paths resolve against the working
// directory. The returned error, if any, is an ErrorList holding every
// problem found.
func Parse(name string, data []byte) (*Inventory, error) {
	d := &decoder{file: name}
	if name == "-" {
		d.file = "<stdin>"
	}
	inv, err := d.inventory(name, data)
	if err != nil {
		return nil, err
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return inv, nil
}

// Machine returns the machine with the given name.
func (inv *Inventory) Machine(name string) (Machine, bool) {
	for _, m := range inv.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return Machine{}, false
}

// Names returns the machine names in file order.
func (inv *Inventory) Names() []string {
	names := make([]string, len(inv.Machines))
	for i, m := range inv.Machines {
		names[i] = m.Name
	}
	return names
}

// SSHAddress returns host:port for dialing, using port 22 when Port is
// unset. IPv6 addresses are bracketed.
func (m Machine) SSHAddress() string {
	port := m.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(m.Address, strconv.Itoa(port))
}
