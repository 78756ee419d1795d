package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/sandbox"
)

type sandboxFlags struct {
	name string
	dir  string
}

func (f *sandboxFlags) open(cmd *cobra.Command) (*sandbox.Sandbox, error) {
	return sandbox.New(f.name, f.dir, cmd.ErrOrStderr())
}

func newSandboxCmd() *cobra.Command {
	f := &sandboxFlags{}
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Practice machines: real Docker hosts reached over SSH, as containers on this machine",
	}
	cmd.PersistentFlags().StringVar(&f.name, "name", "default", "sandbox name (several can run side by side)")
	cmd.PersistentFlags().StringVar(&f.dir, "dir", "", "directory for the inventory, key and known_hosts (default ~/.fleet/sandbox/NAME)")

	var hosts int
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox's hosts (adding hosts if it has fewer than --hosts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sb, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer sb.Close()
			hs, err := sb.Up(cmd.Context(), hosts)
			if err != nil {
				return err
			}
			printHosts(cmd, hs)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\nsandbox %q is up with %d host(s). Point fleet at it:\n", sb.Name, len(hs))
			fmt.Fprintf(out, "  export FLEET_INVENTORY=%s FLEET_STATE=%s\n", sb.InventoryPath(), filepath.Join(sb.Dir, "state.db"))
			fmt.Fprintf(out, "  fleet get nodes\n")
			return nil
		},
	}
	up.Flags().IntVar(&hosts, "hosts", 3, "number of hosts")
	cmd.AddCommand(up)

	status := &cobra.Command{
		Use:   "status",
		Short: "List the sandbox's hosts with address and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sb, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer sb.Close()
			hs, err := sb.Hosts(cmd.Context())
			if err != nil {
				return err
			}
			printHosts(cmd, hs)
			return nil
		},
	}
	cmd.AddCommand(status)

	down := &cobra.Command{
		Use:   "down",
		Short: "Remove the sandbox's hosts, network and files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sb, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer sb.Close()
			if err := sb.Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sandbox %q removed\n", sb.Name)
			return nil
		},
	}
	cmd.AddCommand(down)

	verbs := []struct {
		use, short, done string
		fn               func(*sandbox.Sandbox, context.Context, string) error
	}{
		{"kill", "Stop a host at once, as a machine losing power", "killed", (*sandbox.Sandbox).Kill},
		{"start", "Boot a killed host again", "started", (*sandbox.Sandbox).Start},
		{"pause", "Freeze a host: it hangs, answering nothing", "paused", (*sandbox.Sandbox).Pause},
		{"unpause", "Resume a paused host", "unpaused", (*sandbox.Sandbox).Unpause},
		{"partition", "Cut a host off from this machine while it keeps running", "partitioned", (*sandbox.Sandbox).Partition},
		{"heal", "Undo partition", "healed", (*sandbox.Sandbox).Heal},
	}
	for _, v := range verbs {
		cmd.AddCommand(&cobra.Command{
			Use:   v.use + " HOST",
			Short: v.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				sb, err := f.open(cmd)
				if err != nil {
					return err
				}
				defer sb.Close()
				if err := v.fn(sb, cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", args[0], v.done)
				return nil
			},
		})
	}
	return cmd
}

func printHosts(cmd *cobra.Command, hs []sandbox.Host) {
	t := newTable(cmd.OutOrStdout(), "NAME", "ADDRESS", "STATE")
	for _, h := range hs {
		state := h.State
		if h.Partitioned {
			state += ",partitioned"
		}
		t.row(h.Name, h.Address, state)
	}
	t.flush()
}
