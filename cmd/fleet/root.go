package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/sshexec"
	"github.com/fleetdev/fleet/store"
)

// globals are the flags every command shares.
type globals struct {
	inventory   string
	state       string
	dialTimeout time.Duration
	verbose     bool
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "fleet",
		Short:         "Run containers the Kubernetes way on plain Docker machines over SSH",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.inventory, "inventory", envOr("FLEET_INVENTORY", "inventory.yaml"), "machines file (env FLEET_INVENTORY)")
	pf.StringVar(&g.state, "state", envOr("FLEET_STATE", "fleet.db"), "state file, created on first use (env FLEET_STATE)")
	pf.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "time allowed to connect and authenticate to one machine")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log connection events to stderr")
	root.AddCommand(newSandboxCmd(), newGetCmd(g), newImageCmd(g), newNodeCmd(g), newVersionCmd(),
		newApplyCmd(g), newPlanCmd(g), newDiffCmd(g), newScaleCmd(g), newDeleteCmd(g), newReconcileCmd(g), newDescribeCmd(g), newServeCmd(g), newRolloutCmd(g), newSecretsCmd(g))
	return root
}

// session is what a command that reaches machines needs; close it when done.
type session struct {
	inv         *inventory.Inventory
	store       *store.Store
	pool        *sshexec.Pool
	log         *slog.Logger
	dialTimeout time.Duration
}

func (s *session) Close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// open loads the inventory, opens the state file and prepares one SSH
// connection per machine (dialled on first use).
func (g *globals) open(ctx context.Context) (*session, error) {
	inv, err := inventory.Load(g.inventory)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, g.state)
	if err != nil {
		return nil, err
	}
	known := append([]string{}, inv.KnownHosts...)
	if home, err := os.UserHomeDir(); err == nil {
		known = append(known, filepath.Join(home, ".ssh", "known_hosts"))
	}
	policy, err := sshexec.NewHostKeyPolicy(known, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	sshCfg, err := sshexec.LoadSSHConfig(sshexec.DefaultSSHConfigPath())
	if err != nil {
		st.Close()
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	if g.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	pool, err := sshexec.NewPool(inv, sshexec.Config{
		DialTimeout: g.dialTimeout,
		HostKeys:    policy,
		SSHConfig:   sshCfg,
		Logger:      logger,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &session{inv: inv, store: st, pool: pool, log: logger, dialTimeout: g.dialTimeout}, nil
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print fleet's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "fleet", version)
		},
	}
}
