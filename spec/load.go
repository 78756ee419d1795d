package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// StdinName is the file name standard input gets in messages and Sources.
const StdinName = "<stdin>"

// Load reads and parses manifests from paths. Each path is a file (any
// extension), a directory, searched recursively for *.yaml and *.yml files
// in lexical order (skipping names that start with "."), or "-" for stdin.
// Objects without metadata.namespace go in defaultNamespace, or "default".
//
// Every problem in every file, including unreadable paths and objects
// declared twice (same kind, namespace and name, reported at the second
// with the first's file:line), comes back in one ErrorList; then Result
// holds no objects, only warnings.
func Load(paths []string, stdin io.Reader, defaultNamespace string) (Result, error) {
	ns, err := checkDefaultNamespace(defaultNamespace)
	if err != nil {
		return Result{}, err
	}
	if len(paths) == 0 {
		return Result{}, errors.New("load manifests: no files given")
	}
	var (
		objs    []Object
		warns   []Warning
		errs    ErrorList
		readStd bool
	)
	parse := func(file string, data []byte) {
		d := &decoder{file: file}
		objs = append(objs, d.parse(data, ns)...)
		warns = append(warns, d.warns...)
		errs = append(errs, d.errs...)
	}
	fail := func(file, format string, args ...any) {
		errs = append(errs, &FieldError{File: file, Msg: fmt.Sprintf(format, args...)})
	}
	for _, p := range paths {
		if p == "-" {
			if readStd {
				fail(StdinName, "standard input given more than once")
				continue
			}
			readStd = true
			if stdin == nil {
				fail(StdinName, "no standard input")
				continue
			}
			data, err := io.ReadAll(stdin)
			if err != nil {
				fail(StdinName, "read: %v", err)
				continue
			}
			parse(StdinName, data)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			fail(p, "%v", unwrapPath(err))
			continue
		}
		if !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				fail(p, "%v", unwrapPath(err))
				continue
			}
			parse(p, data)
			continue
		}
		found := 0
		err = filepath.WalkDir(p, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				fail(path, "%v", unwrapPath(err))
				return nil
			}
			if path != p && strings.HasPrefix(e.Name(), ".") {
				if e.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if e.IsDir() || !isManifest(e.Name()) {
				return nil
			}
			found++
			data, err := os.ReadFile(path)
			if err != nil {
				fail(path, "%v", unwrapPath(err))
				return nil
			}
			parse(path, data)
			return nil
		})
		if err != nil {
			fail(p, "%v", unwrapPath(err))
		}
		if found == 0 {
			fail(p, "no *.yaml or *.yml files in this directory")
		}
	}
	errs = append(errs, duplicates(objs)...)
	return result(objs, warns, errs)
}

func isManifest(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// unwrapPath drops the path from a *fs.PathError, which the FieldError
// already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// duplicates reports each object whose Key an earlier object already has.
func duplicates(objs []Object) ErrorList {
	var errs ErrorList
	first := map[string]Source{}
	for _, o := range objs {
		m := o.Metadata()
		k := Key(o)
		src, dup := first[k]
		if !dup {
			first[k] = m.Source
			continue
		}
		what := fmt.Sprintf("%s %s/%s", m.Kind, m.Namespace, m.Name)
		if m.Kind == KindNamespace {
			what = fmt.Sprintf("%s %s", m.Kind, m.Name)
		}
		errs = append(errs, &FieldError{
			File:   m.Source.File,
			Line:   m.Source.Line,
			Object: m.Kind + "/" + m.Name,
			Msg:    fmt.Sprintf("duplicate %s (first defined at %s:%d)", what, src.File, src.Line),
		})
	}
	return errs
}
