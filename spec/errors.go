package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem in a manifest.
type FieldError struct {
	// File is the file name as given to Parse, or as Load found it.
	File string
	// Line is 1-based; 0 when the problem has no line (an unreadable file).
	Line int
	// Object is "Kind/name" of the object the problem is in; "" when the
	// object's kind or name is unknown.
	Object string
	// Field is the path of the offending field, e.g.
	// "spec.template.spec.containers[0].image"; "" for problems with the
	// document or file as a whole.
	Field string
	// Msg says what is wrong, lowercase.
	Msg string
}

// Error formats the problem as "file:line: Kind/name: field: msg", leaving
// out whatever is unknown.
func (e *FieldError) Error() string {
	return format(e.File, e.Line, e.Object, e.Field, e.Msg)
}

func format(file string, line int, object, field, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		fmt.Fprintf(&b, ":%d", line)
	}
	b.WriteString(": ")
	for _, s := range []string{object, field} {
		if s != "" {
			b.WriteString(s)
			b.WriteString(": ")
		}
	}
	b.WriteString(msg)
	return b.String()
}

// ErrorList is every problem found, sorted by file, then line.
type ErrorList []*FieldError

// Error joins the problems with newlines.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sort orders by file and line, keeping discovery order within a line so
// a field's type error stays ahead of what follows from it.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// Warning is a Kubernetes field fleet accepts but ignores by design, such
// as server-set metadata or status.
type Warning struct {
	// Source is where the ignored field is.
	Source Source
	// Object is "Kind/name", or "" when unknown.
	Object string
	Field  string
	Msg    string
}

// String formats the warning like a FieldError.
func (w Warning) String() string {
	return format(w.Source.File, w.Source.Line, w.Object, w.Field, w.Msg)
}

func itoa(i int) string { return strconv.Itoa(i) }
