package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// PodSpecHash identifies the pod template: the first 10 hex characters of
// the SHA-256 of its canonical JSON (labels, annotations and spec, keys
// sorted). It is stable across runs and map orders, changes when anything
// a replica runs with changes, and not when replicas or strategy do.
//
// Nil and empty maps and lists, and zero values, are left out of the JSON,
// so a field added to PodTemplate later leaves existing hashes alone as
// long as its zero value means "as before".
func (d *Deployment) PodSpecHash() string {
	b, err := json.Marshal(d.Template)
	if err != nil {
		panic("spec: marshal pod template: " + err.Error()) // plain data; cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}
