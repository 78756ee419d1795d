package inventory

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in an inventory file.
type FieldError struct {
	// File is the file name as given to Parse or Load.
	File string
	// Line is 1-based; 0 when the problem has no line (an empty file).
	Line int
	// Field is the path of the offending field, e.g. "machines[1].port";
	// "" for problems with the file as a whole, such as YAML syntax.
	Field string
	// Msg says what is wrong, lowercase.
	Msg string
}

// Error formats the problem as "file:line: field: msg", leaving out the
// line or field when there is none.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one inventory file, sorted by line.
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

// sort orders by line, keeping discovery order within a line so a field's
// type error stays ahead of what follows from it.
func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
}
