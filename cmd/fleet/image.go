package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/image"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Move images to machines without a registry"}
	var hosts []string
	var fromFile string
	push := &cobra.Command{
		Use:   "push IMAGE",
		Short: "Copy an image from the local Docker engine (or a file) to every machine that lacks it",
		Long: "Streams the image once, over each machine's SSH connection, into every machine\n" +
			"that does not have the same image ID, all at the same time. Machines that have it\n" +
			"are skipped. With --from-file, IMAGE may be left out to push the archive's first tag.",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			if ref == "" && fromFile == "" {
				return errors.New("image push: name an IMAGE, or give --from-file")
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			names := hosts
			if len(names) == 0 {
				names = s.inv.Names()
			}
			var targets []image.Target
			for _, n := range names {
				if _, ok := s.inv.Machine(n); !ok {
					return fmt.Errorf("--host %s: not in the inventory %s (machines: %v)", n, s.inv.Path, s.inv.Names())
				}
				d, err := s.pool.Docker(n)
				if err != nil {
					return err
				}
				targets = append(targets, image.Target{Name: n, Docker: d})
			}
			var src image.Source
			if fromFile != "" {
				src = image.File{Path: fromFile}
			} else {
				local, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
				if err != nil {
					return fmt.Errorf("connect to the local Docker engine: %w", err)
				}
				defer local.Close()
				src = image.LocalEngine{Client: local}
			}
			start := time.Now()
			results, err := image.Push(cmd.Context(), src, ref, targets)
			if err != nil {
				return err
			}
			t := newTable(cmd.OutOrStdout(), "MACHINE", "RESULT", "SENT", "TIME")
			var failed []error
			for _, r := range results {
				sent := "-"
				if r.Bytes > 0 {
					sent = humanBytes(r.Bytes) + "B"
				}
				t.row(r.Machine, r.Outcome, sent, r.Duration.Round(time.Millisecond).String())
				if r.Err != nil {
					failed = append(failed, r.Err)
				}
			}
			t.flush()
			fmt.Fprintf(cmd.OutOrStdout(), "pushed to %d machine(s) in %s\n", len(results)-len(failed), time.Since(start).Round(time.Millisecond))
			if len(failed) > 0 {
				return fmt.Errorf("image push failed on %d machine(s):\n%w", len(failed), errors.Join(failed...))
			}
			return nil
		},
	}
	push.Flags().StringSliceVar(&hosts, "host", nil, "machine to push to (repeatable; default all)")
	push.Flags().StringVar(&fromFile, "from-file", "", "read the image from a `docker save` archive instead of the local engine")
	cmd.AddCommand(push)
	return cmd
}
