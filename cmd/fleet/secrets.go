package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/store"
)

// newSecretKeyEnv names the environment variable rotate-key takes the new
// key from (base64 of 32 bytes), as an alternative to --new-key-file.
const newSecretKeyEnv = "FLEET_NEW_SECRET_KEY"

func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Inspect and rotate the key that encrypts Secrets in the state file",
		Long: "Secrets are encrypted in the state file with a key kept outside it: FLEET_SECRET_KEY\n" +
			"when set, else the key file beside the state file (STATE.key, created 0600 when the\n" +
			"first Secret is written). Back up that key apart from the state file. See docs/secrets.md.",
	}
	cmd.AddCommand(newSecretsStatusCmd(g), newSecretsRotateKeyCmd(g))
	return cmd
}

func newSecretsStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show where the key comes from, its id, and which key each stored Secret needs",
		Long: "Shows the key in use (by id, never the key), and counts the stored Secrets by the key\n" +
			"that encrypted them, decrypting each to prove it can. Exits 1 when the key cannot be\n" +
			"used or a Secret cannot be decrypted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := store.Open(cmd.Context(), g.state)
			if err != nil {
				return err
			}
			defer st.Close()
			ks, err := st.SecretKeyStatus(cmd.Context())
			if err != nil {
				return err
			}
			printKeyStatus(cmd.OutOrStdout(), ks)
			if ks.KeyErr != nil {
				return ks.KeyErr
			}
			if n := len(ks.Unreadable); n > 0 {
				return fmt.Errorf("%s cannot be decrypted with the keys available: %s", secretCount(n), strings.Join(ks.Unreadable, ", "))
			}
			return nil
		},
	}
}

func printKeyStatus(w io.Writer, ks store.SecretKeyStatus) {
	switch {
	case ks.KeyErr != nil:
		fmt.Fprintf(w, "key:      %s (cannot be used, see below)\n", ks.Source)
	case ks.KeyID == "":
		fmt.Fprintf(w, "key:      none yet: %s is created when the first Secret is written\n", ks.Source)
	default:
		fmt.Fprintf(w, "key:      %s (id %s)\n", ks.Source, ks.KeyID)
	}
	if ks.IgnoredKeyFile != "" {
		fmt.Fprintf(w, "          the key file %s is not used while %s is set\n", ks.IgnoredKeyFile, store.SecretKeyEnv)
	}
	if ks.OldKeyFile != "" {
		fmt.Fprintf(w, "          %s (id %s) is left from an interrupted rotation: run `fleet secrets rotate-key` to finish it\n", ks.OldKeyFile, dash(ks.OldKeyID))
	}
	if len(ks.ByKey) == 0 {
		fmt.Fprintln(w, "secrets:  none stored")
		return
	}
	ids := make([]string, 0, len(ks.ByKey))
	for id := range ks.ByKey {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	label := "secrets: "
	for _, id := range ids {
		var what string
		switch {
		case id == "":
			what = "not encrypted (rotate-key encrypts them)"
		case id == "malformed":
			what = "with a damaged encryption header"
		case ks.KeyErr != nil:
			what = "encrypted with key " + id
		case id == ks.KeyID:
			what = "encrypted with key " + id + " (the key in use)"
		case id == ks.OldKeyID:
			what = "encrypted with key " + id + " (the old key file's)"
		default:
			what = "encrypted with key " + id + " (not the key in use)"
		}
		fmt.Fprintf(w, "%s %d %s\n", label, ks.ByKey[id], what)
		label = "         "
	}
	if ks.KeyID != "" && ks.RecordedID != "" && ks.RecordedID != ks.KeyID {
		fmt.Fprintf(w, "          the state file expects key %s for new Secrets\n", ks.RecordedID)
	}
}

func newSecretsRotateKeyCmd(g *globals) *cobra.Command {
	var newKeyFile string
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Re-encrypt every Secret with a new key",
		Long: "Generates a new key, re-encrypts every Secret with it in one transaction, and installs it\n" +
			"in the key file (the previous key is kept as KEYFILE.old until the transaction has\n" +
			"committed). If interrupted, run it again: it finishes the interrupted rotation first.\n\n" +
			"With " + store.SecretKeyEnv + " set, fleet writes no key file: give the new key with --new-key-file\n" +
			"(a new key is generated into FILE, mode 0600, when FILE does not exist) or " + newSecretKeyEnv + ",\n" +
			"then set " + store.SecretKeyEnv + " to it wherever fleet runs. Keys are never printed.\n\n" +
			"Backups of the state file taken before the rotation need the previous key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fromEnv := os.Getenv(store.SecretKeyEnv) != ""
			newKey, where, err := newKeyFromFlags(out, newKeyFile)
			if err != nil {
				return err
			}
			if fromEnv && newKey == nil {
				return fmt.Errorf("the key comes from %s, so fleet cannot install a new one: give it with --new-key-file FILE (generated into FILE if it does not exist) or %s", store.SecretKeyEnv, newSecretKeyEnv)
			}
			st, err := store.Open(cmd.Context(), g.state)
			if err != nil {
				return err
			}
			defer st.Close()
			rot, err := st.RotateSecretKey(cmd.Context(), newKey)
			if err != nil {
				return err
			}
			if rot.Resumed {
				fmt.Fprintln(out, "finished an interrupted rotation first")
			}
			was := "no key before"
			if rot.OldID != "" {
				was = "was " + rot.OldID
			}
			fmt.Fprintf(out, "re-encrypted %s with key %s (%s)\n", secretCount(rot.Secrets), rot.NewID, was)
			if rot.KeyFile != "" {
				fmt.Fprintf(out, "the key is in %s: back it up apart from the state file; backups taken before now need the previous key\n", rot.KeyFile)
				return nil
			}
			fmt.Fprintf(out, "now set %s to the new key (%s, id %s) wherever fleet runs with this state file, and restart fleet serve:\n", store.SecretKeyEnv, where, rot.NewID)
			fmt.Fprintf(out, "until then they cannot read Secrets and refuse to write them\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new key (base64 of 32 bytes); generated, mode 0600, if it does not exist")
	return cmd
}

// newKeyFromFlags returns the new key given with --new-key-file or
// FLEET_NEW_SECRET_KEY, and where it is (for messages); nil when neither
// is given.
func newKeyFromFlags(out io.Writer, file string) ([]byte, string, error) {
	env := os.Getenv(newSecretKeyEnv)
	switch {
	case file != "" && env != "":
		return nil, "", fmt.Errorf("give the new key once: --new-key-file or %s, not both", newSecretKeyEnv)
	case env != "":
		key, err := store.ParseSecretKey(env)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", newSecretKeyEnv, err)
		}
		return key, "from " + newSecretKeyEnv, nil
	case file == "":
		return nil, "", nil
	}
	key, err := store.ReadSecretKeyFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = store.NewSecretKey(); err != nil {
			return nil, "", err
		}
		if err := store.CreateSecretKeyFile(file, key); err != nil {
			return nil, "", err
		}
		fmt.Fprintf(out, "wrote a new key to %s (mode 0600)\n", file)
	} else if err != nil {
		return nil, "", fmt.Errorf("--new-key-file: %w", err)
	}
	return key, "in " + file, nil
}

// secretCount is "1 Secret", "2 Secrets".
func secretCount(n int) string {
	if n == 1 {
		return "1 Secret"
	}
	return fmt.Sprintf("%d Secrets", n)
}
