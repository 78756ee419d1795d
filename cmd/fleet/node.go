package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/sshexec"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage machines"}
	cmd.AddCommand(&cobra.Command{
		Use:   "forget-key NAME",
		Short: "Remove the host key pinned for a machine, so the next contact pins its new key",
		Long: "When a machine's host key changes (it was reinstalled), fleet refuses it.\n" +
			"If the change is expected, forget the pinned key; the next contact pins the new one.\n" +
			"Keys listed in known_hosts files are not affected: edit those with ssh-keygen -R.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			t, ok := s.pool.Target(args[0])
			if !ok {
				return fmt.Errorf("machine %q is not in the inventory %s", args[0], s.inv.Path)
			}
			addr := sshexec.KeyAddress(t)
			removed, err := s.store.ForgetHostKey(cmd.Context(), addr)
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(cmd.OutOrStdout(), "no key pinned for %s (%s)\n", args[0], addr)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "forgot the host key pinned for %s (%s)\n", args[0], addr)
			return nil
		},
	})
	return cmd
}
