// Package sandbox runs practice Docker hosts as containers on the local
// Docker engine: each has its own address on a dedicated bridge network, a
// real sshd and its own dockerd, so fleet (and its tests) reach them exactly
// as they reach real machines. It can also kill, pause and cut them off.
package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Label keys on everything a sandbox creates.
const (
	LabelSandbox = "fleet.sandbox"
	LabelHost    = "fleet.sandbox.host"
)

// Files a sandbox writes in its directory.
const (
	InventoryFile  = "inventory.yaml"
	KeyFile        = "id_ed25519"
	KnownHostsFile = "known_hosts"
	stateFile      = "sandbox.json"
)

// Sandbox is one named set of practice hosts and the directory holding
// their inventory, key and known_hosts.
type Sandbox struct {
	Name string
	Dir  string
	cli  *client.Client
	log  io.Writer
}

// Host is one sandbox host as seen now.
type Host struct {
	Name        string // as written in the inventory
	Container   string
	Address     string
	State       string // running, paused, exited, …
	Partitioned bool
}

// DefaultDir is where a sandbox keeps its files unless told otherwise:
// ~/.fleet/sandbox/NAME.
func DefaultDir(name string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".fleet", "sandbox", name)
}

// New opens sandbox name with files in dir, using the local Docker engine
// (DOCKER_HOST and friends are honoured).
func New(name, dir string, log io.Writer) (*Sandbox, error) {
	if !validName(name) {
		return nil, fmt.Errorf("sandbox name %q: use lowercase letters, digits and -, at most 30", name)
	}
	if dir == "" {
		dir = DefaultDir(name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("connect to the local Docker engine: %w", err)
	}
	if log == nil {
		log = io.Discard
	}
	return &Sandbox{Name: name, Dir: abs, cli: cli, log: log}, nil
}

// Close releases the connection to the local engine.
func (s *Sandbox) Close() error { return s.cli.Close() }

func validName(n string) bool {
	if n == "" || len(n) > 30 {
		return false
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(n)-1
		if !ok {
			return false
		}
	}
	return true
}

func (s *Sandbox) networkName() string           { return "fleet-sb-" + s.Name }
func (s *Sandbox) containerName(h string) string { return "fleet-sb-" + s.Name + "-" + h }

// HostName is the inventory name of the i-th host (1-based).
func HostName(i int) string { return "node" + strconv.Itoa(i) }

// InventoryPath is the inventory file the sandbox writes.
func (s *Sandbox) InventoryPath() string { return filepath.Join(s.Dir, InventoryFile) }

type state struct {
	Partitioned []string `json:"partitioned,omitempty"`
}

func (s *Sandbox) readState() (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(s.Dir, stateFile))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (s *Sandbox) writeState(st state) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(s.Dir, stateFile), b, 0o644)
}

// Up makes sure hosts node1..nodeN exist and run, adding hosts a previous
// Up did not make, then rewrites the inventory and known_hosts.
func (s *Sandbox) Up(ctx context.Context, n int) ([]Host, error) {
	if n < 1 || n > 200 {
		return nil, fmt.Errorf("--hosts %d: want 1 to 200", n)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := EnsureImage(ctx, s.cli, s.log); err != nil {
		return nil, err
	}
	pub, err := s.ensureKey()
	if err != nil {
		return nil, err
	}
	subnet, gateway, err := s.ensureNetwork(ctx)
	if err != nil {
		return nil, err
	}
	existing, err := s.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]Host{}
	for _, h := range existing {
		have[h.Name] = h
	}
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, HostName(i))
	}
	for _, h := range existing {
		if !contains(names, h.Name) {
			names = append(names, h.Name)
		}
	}
	_ = gateway
	err = parallel(ctx, names, 4, func(ctx context.Context, name string) error {
		h, ok := have[name]
		switch {
		case !ok:
			idx, _ := strconv.Atoi(strings.TrimPrefix(name, "node"))
			addr, err := hostAddress(subnet, idx)
			if err != nil {
				return err
			}
			if err := s.create(ctx, name, addr, pub); err != nil {
				return err
			}
		case h.State == "paused":
			if err := s.cli.ContainerUnpause(ctx, h.Container); err != nil {
				return fmt.Errorf("unpause %s: %w", name, err)
			}
			return nil
		case h.State == "running":
			return nil
		}
		if err := s.cli.ContainerStart(ctx, s.containerName(name), container.StartOptions{}); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		return s.waitReady(ctx, name)
	})
	if err != nil {
		return nil, err
	}
	hosts, err := s.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.writeFiles(ctx, hosts); err != nil {
		return nil, err
	}
	return hosts, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// ensureKey returns the sandbox's public key, making the key pair on first
// use.
func (s *Sandbox) ensureKey() (string, error) {
	path := filepath.Join(s.Dir, KeyFile)
	if b, err := os.ReadFile(path + ".pub"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "fleet sandbox "+s.Name)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	sshPub, err := ssh.NewPublicKey(pubKey)
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " fleet-sandbox-" + s.Name
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", err
	}
	return line, nil
}

// ensureNetwork returns the sandbox network's subnet and gateway, creating
// the network on a /24 that nothing on this machine uses yet.
func (s *Sandbox) ensureNetwork(ctx context.Context) (*net.IPNet, net.IP, error) {
	insp, err := s.cli.NetworkInspect(ctx, s.networkName(), network.InspectOptions{})
	if err == nil {
		return parseIPAM(insp.IPAM)
	}
	if !errdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("inspect network %s: %w", s.networkName(), err)
	}
	used, err := s.usedSubnets(ctx)
	if err != nil {
		return nil, nil, err
	}
	for third := 0; third < 256; third++ {
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.213.%d.0/24", third))
		if overlapsAny(cand, used) {
			continue
		}
		gw := fmt.Sprintf("10.213.%d.1", third)
		_, err := s.cli.NetworkCreate(ctx, s.networkName(), network.CreateOptions{
			Driver: "bridge",
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: cand.String(), Gateway: gw}}},
			Labels: map[string]string{LabelSandbox: s.Name},
		})
		if err != nil {
			if strings.Contains(err.Error(), "overlap") {
				continue // taken by a network created meanwhile
			}
			return nil, nil, fmt.Errorf("create network %s: %w", s.networkName(), err)
		}
		return cand, net.ParseIP(gw), nil
	}
	return nil, nil, errors.New("create sandbox network: no free /24 left in 10.213.0.0/16")
}

func parseIPAM(ipam network.IPAM) (*net.IPNet, net.IP, error) {
	for _, c := range ipam.Config {
		_, n, err := net.ParseCIDR(c.Subnet)
		if err == nil && n.IP.To4() != nil {
			return n, net.ParseIP(c.Gateway), nil
		}
	}
	return nil, nil, errors.New("sandbox network has no IPv4 subnet: remove it with `fleet sandbox down`")
}

func (s *Sandbox) usedSubnets(ctx context.Context) ([]*net.IPNet, error) {
	var used []*net.IPNet
	nets, err := s.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Docker networks: %w", err)
	}
	for _, n := range nets {
		for _, c := range n.IPAM.Config {
			if _, sn, err := net.ParseCIDR(c.Subnet); err == nil {
				used = append(used, sn)
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			used = append(used, ipn)
		}
	}
	return used, nil
}

func overlapsAny(n *net.IPNet, others []*net.IPNet) bool {
	for _, o := range others {
		if n.Contains(o.IP) || o.Contains(n.IP) {
			return true
		}
	}
	return false
}

// hostAddress gives host i the address .10+i of the subnet, stable across
// restarts so the inventory stays true.
func hostAddress(subnet *net.IPNet, i int) (string, error) {
	if i < 1 || i > 200 {
		return "", fmt.Errorf("host index %d out of range", i)
	}
	ip := subnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], byte(10+i)).String(), nil
}

func (s *Sandbox) create(ctx context.Context, name, addr, pub string) error {
	init := true
	_, err := s.cli.ContainerCreate(ctx,
		&container.Config{
			Image:    ImageRef(),
			Hostname: name,
			Env:      []string{"FLEET_AUTHORIZED_KEY=" + pub},
			Labels:   map[string]string{LabelSandbox: s.Name, LabelHost: name},
			Volumes:  map[string]struct{}{"/var/lib/docker": {}},
		},
		&container.HostConfig{
			Init: &init,
			// --privileged is refused on these machines (SYS_RESOURCE is
			// outside the bounding set); this is the working equivalent.
			CapAdd:      []string{"ALL"},
			CapDrop:     []string{"SYS_RESOURCE"},
			SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
			Tmpfs:       map[string]string{"/run": "", "/tmp": ""},
			Binds:       []string{"/sys/fs/cgroup:/sys/fs/cgroup:rw"},
		},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			s.networkName(): {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr}},
		}},
		nil, s.containerName(name))
	if err != nil {
		return fmt.Errorf("create host %s: %w", name, err)
	}
	fmt.Fprintf(s.log, "created %s at %s\n", name, addr)
	return nil
}

// waitReady waits until the host's dockerd answers and sshd has its keys.
func (s *Sandbox) waitReady(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		code, out, err := s.exec(ctx, name, "sh", "-c", "test -s /etc/ssh/ssh_host_ed25519_key.pub && docker version --format '{{.Server.Version}}'")
		if err == nil && code == 0 {
			return nil
		}
		last = err
		if last == nil {
			last = fmt.Errorf("exit %d: %s", code, strings.TrimSpace(out))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s not ready after 90s: %v", name, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exec runs argv in host name's container and returns its exit code and
// combined output. argv is never passed through a shell by this function.
func (s *Sandbox) exec(ctx context.Context, name string, argv ...string) (int, string, error) {
	id, err := s.cli.ContainerExecCreate(ctx, s.containerName(name), container.ExecOptions{
		Cmd: argv, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return -1, "", err
	}
	resp, err := s.cli.ContainerExecAttach(ctx, id.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", err
	}
	defer resp.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, resp.Reader); err != nil {
		return -1, out.String(), err
	}
	insp, err := s.cli.ContainerExecInspect(ctx, id.ID)
	if err != nil {
		return -1, out.String(), err
	}
	return insp.ExitCode, out.String(), nil
}

// Exec runs argv on sandbox host name (for tests and failure drills).
func (s *Sandbox) Exec(ctx context.Context, name string, argv ...string) (int, string, error) {
	return s.exec(ctx, name, argv...)
}

// Hosts lists the sandbox's hosts in name order.
func (s *Sandbox) Hosts(ctx context.Context) ([]Host, error) {
	list, err := s.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelSandbox+"="+s.Name))})
	if err != nil {
		return nil, fmt.Errorf("list sandbox hosts: %w", err)
	}
	st, err := s.readState()
	if err != nil {
		return nil, err
	}
	var hosts []Host
	for _, c := range list {
		h := Host{Name: c.Labels[LabelHost], Container: strings.TrimPrefix(c.Names[0], "/"), State: c.State}
		if c.NetworkSettings != nil {
			if ep, ok := c.NetworkSettings.Networks[s.networkName()]; ok {
				h.Address = ep.IPAddress
				if ep.IPAMConfig != nil && ep.IPAMConfig.IPv4Address != "" {
					h.Address = ep.IPAMConfig.IPv4Address
				}
			}
		}
		h.Partitioned = contains(st.Partitioned, h.Name)
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(hosts[i].Name, "node"))
		b, _ := strconv.Atoi(strings.TrimPrefix(hosts[j].Name, "node"))
		if a != b {
			return a < b
		}
		return hosts[i].Name < hosts[j].Name
	})
	return hosts, nil
}

// writeFiles writes known_hosts with each host's real keys (read from the
// host itself) and the inventory.
func (s *Sandbox) writeFiles(ctx context.Context, hosts []Host) error {
	var kh strings.Builder
	type machine struct {
		Name    string            `yaml:"name"`
		Address string            `yaml:"address"`
		Labels  map[string]string `yaml:"labels"`
	}
	var machines []machine
	zones := []string{"a", "b", "c"}
	for i, h := range hosts {
		for _, t := range []string{"ed25519", "ecdsa", "rsa"} {
			b, err := s.readFile(ctx, h.Container, "/etc/ssh/ssh_host_"+t+"_key.pub")
			if err != nil {
				if t == "ed25519" {
					return fmt.Errorf("read host key of %s: %w", h.Name, err)
				}
				continue
			}
			fields := strings.Fields(string(b))
			if len(fields) >= 2 {
				fmt.Fprintf(&kh, "%s %s %s\n", h.Address, fields[0], fields[1])
			}
		}
		machines = append(machines, machine{Name: h.Name, Address: h.Address,
			Labels: map[string]string{"fleet.dev/sandbox": s.Name, "zone": zones[i%len(zones)]}})
	}
	if err := os.WriteFile(filepath.Join(s.Dir, KnownHostsFile), []byte(kh.String()), 0o644); err != nil {
		return err
	}
	inv := struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		KnownHosts []string          `yaml:"knownHosts"`
		Defaults   map[string]string `yaml:"defaults"`
		Machines   []machine         `yaml:"machines"`
	}{"fleet/v1", "Inventory", []string{KnownHostsFile},
		map[string]string{"user": "root", "identityFile": KeyFile}, machines}
	b, err := yaml.Marshal(inv)
	if err != nil {
		return err
	}
	head := fmt.Sprintf("# Written by `fleet sandbox up --name %s`; rewritten on every up.\n", s.Name)
	return os.WriteFile(s.InventoryPath(), append([]byte(head), b...), 0o644)
}

// readFile copies one small file out of a container (started or not).
func (s *Sandbox) readFile(ctx context.Context, ctr, path string) ([]byte, error) {
	rc, _, err := s.cli.CopyFromContainer(ctx, ctr, path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(tr, 1<<20))
}

func (s *Sandbox) find(ctx context.Context, name string) (Host, error) {
	hosts, err := s.Hosts(ctx)
	if err != nil {
		return Host{}, err
	}
	var names []string
	for _, h := range hosts {
		if h.Name == name {
			return h, nil
		}
		names = append(names, h.Name)
	}
	if len(hosts) == 0 {
		return Host{}, fmt.Errorf("sandbox %q has no hosts: run `fleet sandbox up --name %s`", s.Name, s.Name)
	}
	return Host{}, fmt.Errorf("sandbox %q has no host %q (hosts: %s)", s.Name, name, strings.Join(names, ", "))
}

// Kill stops host name at once, as a machine losing power.
func (s *Sandbox) Kill(ctx context.Context, name string) error {
	h, err := s.find(ctx, name)
	if err != nil {
		return err
	}
	if h.State == "paused" {
		if err := s.cli.ContainerUnpause(ctx, h.Container); err != nil {
			return fmt.Errorf("kill %s: unpause first: %w", name, err)
		}
	}
	if h.State != "running" && h.State != "paused" {
		return nil
	}
	if err := s.cli.ContainerKill(ctx, h.Container, "KILL"); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	return nil
}

// Start boots a killed host again and waits until it serves SSH and Docker.
func (s *Sandbox) Start(ctx context.Context, name string) error {
	h, err := s.find(ctx, name)
	if err != nil {
		return err
	}
	switch h.State {
	case "running":
		return nil
	case "paused":
		return fmt.Errorf("start %s: it is paused; use `fleet sandbox unpause %s`", name, name)
	}
	if err := s.cli.ContainerStart(ctx, h.Container, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := s.waitReady(ctx, name); err != nil {
		return err
	}
	st, err := s.readState()
	if err != nil {
		return err
	}
	if contains(st.Partitioned, name) {
		return s.applyPartition(ctx, name, true) // firewall rules die with the host
	}
	return nil
}

// Pause freezes every process of host name: the machine hangs, its
// address still answers TCP handshakes but nothing replies.
func (s *Sandbox) Pause(ctx context.Context, name string) error {
	h, err := s.find(ctx, name)
	if err != nil {
		return err
	}
	if h.State == "paused" {
		return nil
	}
	if err := s.cli.ContainerPause(ctx, h.Container); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	return nil
}

// Unpause resumes a paused host.
func (s *Sandbox) Unpause(ctx context.Context, name string) error {
	h, err := s.find(ctx, name)
	if err != nil {
		return err
	}
	if h.State != "paused" {
		return nil
	}
	if err := s.cli.ContainerUnpause(ctx, h.Container); err != nil {
		return fmt.Errorf("unpause %s: %w", name, err)
	}
	return nil
}

// Partition cuts host name off from this machine (the controller) while it
// keeps running and keeps reaching the other hosts: packets to and from the
// network's gateway are dropped inside the host.
func (s *Sandbox) Partition(ctx context.Context, name string) error {
	return s.setPartition(ctx, name, true)
}

// Heal undoes Partition.
func (s *Sandbox) Heal(ctx context.Context, name string) error {
	return s.setPartition(ctx, name, false)
}

func (s *Sandbox) setPartition(ctx context.Context, name string, cut bool) error {
	h, err := s.find(ctx, name)
	if err != nil {
		return err
	}
	if h.State != "running" {
		return fmt.Errorf("partition %s: host is %s; start or unpause it first", name, h.State)
	}
	if err := s.applyPartition(ctx, name, cut); err != nil {
		return err
	}
	st, err := s.readState()
	if err != nil {
		return err
	}
	var keep []string
	for _, p := range st.Partitioned {
		if p != name {
			keep = append(keep, p)
		}
	}
	if cut {
		keep = append(keep, name)
	}
	st.Partitioned = keep
	return s.writeState(st)
}

func (s *Sandbox) applyPartition(ctx context.Context, name string, cut bool) error {
	_, gw, err := s.ensureNetwork(ctx)
	if err != nil {
		return err
	}
	const chain = "FLEET-PARTITION"
	steps := [][]string{{"iptables", "-w", "-N", chain}, {"iptables", "-w", "-F", chain}}
	if cut {
		steps = append(steps,
			[]string{"iptables", "-w", "-A", chain, "-s", gw.String(), "-j", "DROP"},
			[]string{"iptables", "-w", "-A", chain, "-d", gw.String(), "-j", "DROP"})
	}
	for _, hook := range []string{"INPUT", "OUTPUT"} {
		if code, _, _ := s.exec(ctx, name, "iptables", "-w", "-C", hook, "-j", chain); code != 0 {
			steps = append(steps, []string{"iptables", "-w", "-I", hook, "-j", chain})
		}
	}
	for i, argv := range steps {
		code, out, err := s.exec(ctx, name, argv...)
		if err != nil {
			return fmt.Errorf("partition %s: %s: %w", name, strings.Join(argv, " "), err)
		}
		if code != 0 && i > 0 { // -N fails when the chain exists, which is fine
			return fmt.Errorf("partition %s: %s: exit %d: %s", name, strings.Join(argv, " "), code, strings.TrimSpace(out))
		}
	}
	return nil
}

// Down removes every host, the network and the files the sandbox wrote.
func (s *Sandbox) Down(ctx context.Context) error {
	hosts, err := s.Hosts(ctx)
	if err != nil {
		return err
	}
	err = parallel(ctx, hostNames(hosts), 8, func(ctx context.Context, name string) error {
		err := s.cli.ContainerRemove(ctx, s.containerName(name), container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove host %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.cli.NetworkRemove(ctx, s.networkName()); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", s.networkName(), err)
	}
	for _, f := range []string{InventoryFile, KeyFile, KeyFile + ".pub", KnownHostsFile, stateFile} {
		os.Remove(filepath.Join(s.Dir, f))
	}
	os.Remove(s.Dir) // only if nothing else is left in it
	return nil
}

func hostNames(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// parallel runs fn for each name with at most limit at once and returns
// every error joined.
func parallel(ctx context.Context, names []string, limit int, fn func(context.Context, string) error) error {
	sem := make(chan struct{}, limit)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := fn(ctx, n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
