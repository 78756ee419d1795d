package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/reconciler"
)

func newServeCmd(g *globals) *cobra.Command {
	var c reconciler.Controller
	var lbAddress, adminAddress string
	var io ingressOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: watch machines and desired state, converge on every change",
		Long: "Holds the reconcile lease while it runs (a cron `fleet reconcile` then defers to it),\n" +
			"keeps one SSH connection per machine, pings each machine every --node-interval and\n" +
			"marks it NotReady after --node-timeout without an answer (its pods are then placed\n" +
			"elsewhere; when it answers again, the surplus pods there are stopped), streams\n" +
			"container events from every machine, and notices apply/scale/delete from other\n" +
			"fleet processes within 50 ms. SIGTERM finishes the pass in flight and exits.\n\n" +
			"--node-timeout trades speed against false alarms: a network blip longer than it\n" +
			"moves pods needlessly (and they are moved back by fencing when it ends).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			level := slog.LevelInfo
			if g.verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			rec := s.reconciler()
			rec.Log = logger
			c.R = rec
			c.Leases = s.store
			c.Holder = holderName("serve")
			c.Version = s.store.DesiredVersion
			c.Probe = s.probe
			c.Probes = rec.Probes
			c.Ping = func(ctx context.Context, m string) error {
				d, err := s.pool.Docker(m)
				if err != nil {
					return err
				}
				_, err = node.Ping(ctx, d)
				return err
			}
			c.Watch = func(ctx context.Context, m string) (<-chan struct{}, <-chan error) {
				out := make(chan struct{}, 1)
				errs := make(chan error, 1)
				d, err := s.pool.Docker(m)
				if err != nil {
					errs <- err
					close(out)
					return out, errs
				}
				msgs, derrs := d.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
					filters.Arg("type", "container"),
					filters.Arg("label", reconciler.LabelManaged+"=true"),
					filters.Arg("event", "die"), filters.Arg("event", "destroy"),
					filters.Arg("event", "oom"), filters.Arg("event", "health_status"),
				)})
				go func() {
					defer close(out)
					for {
						select {
						case <-msgs:
							select {
							case out <- struct{}{}:
							default:
							}
						case err := <-derrs:
							errs <- err
							return
						case <-ctx.Done():
							return
						}
					}
				}()
				return out, errs
			}
			c.Machines = s.inv.Names()
			c.Log = logger
			t := newTraffic(cmd.Context(), s.store, lbAddress, io, logger)
			if err := t.serveAdmin(cmd.Context(), adminAddress); err != nil {
				return err
			}
			c.Routes, c.Drain, c.Stats = t.routes, t.drain, t.stats
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				t.shutdown(ctx)
			}()
			fmt.Fprintf(cmd.ErrOrStderr(), "fleet serve: %d machines, node timeout %s; state %s\n", len(c.Machines), c.NodeTimeout, g.state)
			return c.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&lbAddress, "lb-address", "0.0.0.0", "address LoadBalancer services listen on (each on its own port)")
	cmd.Flags().StringVar(&adminAddress, "admin-address", "127.0.0.1:9469", "address of the admin endpoint: /metrics (Prometheus) and /healthz; empty disables it")
	cmd.Flags().StringVar(&io.http, "ingress-http", ":80", "address Ingresses are served on over HTTP (and ACME HTTP-01 challenges answered); empty disables it")
	cmd.Flags().StringVar(&io.https, "ingress-https", ":443", "address Ingresses are served on over HTTPS; empty disables it")
	cmd.Flags().StringVar(&io.acmeCA, "acme-ca", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory for Ingress certificates (Let's Encrypt staging: https://acme-staging-v02.api.letsencrypt.org/directory, or any ACME CA)")
	cmd.Flags().StringVar(&io.acmeEmail, "acme-email", "", "contact address for the ACME account")
	cmd.Flags().StringVar(&io.acmeRoot, "acme-ca-root", "", "PEM file of extra roots to trust for the ACME server's own certificate (a private CA)")
	cmd.Flags().DurationVar(&c.NodeInterval, "node-interval", 500*time.Millisecond, "how often each machine is pinged")
	cmd.Flags().DurationVar(&c.NodeTimeout, "node-timeout", 2*time.Second, "silence after which a machine is NotReady and its pods move")
	cmd.Flags().DurationVar(&c.Resync, "resync", 10*time.Second, "run a full pass at least this often")
	return cmd
}
