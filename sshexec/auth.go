package sshexec

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authMethods builds the ways to authenticate: the identity file if one is
// set, the ssh-agent if asked for (or if nothing else is set and one runs),
// else the default identity files OpenSSH would try.
func authMethods(identityFile string, useAgent bool) ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	cleanup := func() {}
	if identityFile != "" {
		s, err := loadSigner(identityFile)
		if err != nil {
			return nil, cleanup, err
		}
		methods = append(methods, ssh.PublicKeys(s))
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if useAgent || (identityFile == "" && sock != "") {
		if sock == "" {
			return nil, cleanup, errors.New("agent: true but SSH_AUTH_SOCK is not set: start ssh-agent or set identityFile")
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, cleanup, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
		}
		cleanup = func() { conn.Close() }
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	if len(methods) == 0 {
		home, _ := os.UserHomeDir()
		var signers []ssh.Signer
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			if s, err := loadSigner(filepath.Join(home, ".ssh", name)); err == nil {
				signers = append(signers, s)
			}
		}
		if len(signers) == 0 {
			return nil, cleanup, errors.New("no identity: set identityFile or agent in the inventory, or create ~/.ssh/id_ed25519")
		}
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	return methods, cleanup, nil
}

func loadSigner(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var pp *ssh.PassphraseMissingError
	if errors.As(err, &pp) {
		return nil, fmt.Errorf("identity file %s is passphrase-protected: load it into ssh-agent (ssh-add) and set agent: true", path)
	}
	if err != nil {
		return nil, fmt.Errorf("parse identity file %s: %w", path, err)
	}
	return s, nil
}
