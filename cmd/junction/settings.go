package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envKey is the flag annotation that names a flag's JUNCTION_* variable.
const envKey = "junction-env"

// envFlag ties the flag called name to the environment variable key: when
// the flag is not given, a set variable is parsed exactly as the flag
// would be (applyEnv), so a value the flag would refuse is refused from
// the variable too. The variable is shown in the flag's usage.
func envFlag(fs *pflag.FlagSet, name, key string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("envFlag: no flag " + name) // a mistake in this file's callers, caught by every test
	}
	f.Usage += " [" + key + "]"
	_ = fs.SetAnnotation(name, envKey, []string{key})
}

// applyEnv sets every flag of fs that was not given from its variable, if
// set. The first value that does not parse is an error naming the
// variable, its value and what the flag accepts.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		keys := f.Annotations[envKey]
		if err != nil || f.Changed || len(keys) == 0 {
			return
		}
		v := getenv(keys[0])
		if v == "" {
			return
		}
		if f.Value.Type() == "stringArray" || f.Value.Type() == "stringSlice" {
			// A list from one variable: comma-separated, as on the command line.
			for _, item := range strings.Split(v, ",") {
				if serr := fs.Set(f.Name, strings.TrimSpace(item)); serr != nil {
					err = usagef("%s=%q: %v", keys[0], v, serr)
					return
				}
			}
			f.Changed = false
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usagef("%s=%q: want %s (%s)", keys[0], v, accepts(f), unwrapParse(serr))
			return
		}
		f.Changed = false // still "not given": flag-only checks stay quiet
	})
	return err
}

// flagged names the flag and variable of a setting in err: a service's
// own Config says "token-ttl 30s: …" (the setting's name first), which
// becomes "--token-ttl (JUNCTION_TOKEN_TTL) 30s: …". Other errors are
// returned as they are.
func flagged(fs *pflag.FlagSet, err error) error {
	msg := err.Error()
	name, rest, _ := strings.Cut(msg, " ")
	name = strings.TrimSuffix(name, ":")
	f := fs.Lookup(name)
	if f == nil || strings.HasPrefix(msg, "--") {
		return err
	}
	label := "--" + name
	if keys := f.Annotations[envKey]; len(keys) > 0 {
		label += " (" + keys[0] + ")"
	}
	if rest == "" || strings.HasPrefix(msg, name+":") {
		return fmt.Errorf("%s%s", label, strings.TrimPrefix(msg, name))
	}
	return fmt.Errorf("%s %s", label, rest)
}

// accepts says what kind of value a flag takes.
func accepts(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "duration":
		return "a duration such as 15m, 30s or 1h30m"
	case "bool":
		return "true or false (1 or 0)"
	case "int", "int64", "uint64":
		return "a whole number"
	case "float64":
		return "a number"
	default:
		return "a " + f.Value.Type()
	}
}

// unwrapParse keeps the innermost reason of a parse error ("invalid
// syntax", "missing unit in duration").
func unwrapParse(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// usageError is an invocation the program cannot use: an unknown command
// or flag, a missing argument, a value out of range. The process exits
// with status 2 and points to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// asUsage marks err, if not nil, as a usage error.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// usageArgs wraps an argument check so its failures are usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(check(cmd, args)) }
}

// exitCode reports err on stderr and returns the process's exit status: 0
// for none, 2 for a usage error (with a pointer to --help), 1 otherwise.
func exitCode(err error, args []string, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "junction:", err)
	var u usageError
	if errors.As(err, &u) {
		help := "junction --help"
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			help = "junction " + args[0] + " --help"
		}
		fmt.Fprintf(stderr, "Run '%s' for usage.\n", help)
		return 2
	}
	return 1
}

// configurationDoc is docs/configuration.md: every setting of every
// command, from the flags themselves.
func configurationDoc(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString(`# Configuration

Every setting of every ` + "`junction`" + ` command, generated from the flags
themselves (` + "`go test ./cmd/junction -run TestConfigurationDoc -update`" + `
rewrites this file; a test fails when it is out of date). A flag wins over
its variable; a variable is parsed exactly as its flag would be, and a value
either refuses is an error naming it: the process exits with status 2 before
doing anything.
`)
	cmds := []*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.HasAvailableLocalFlags() && c.Runnable() {
			cmds = append(cmds, c)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	slices.SortFunc(cmds, func(a, b *cobra.Command) int { return strings.Compare(a.CommandPath(), b.CommandPath()) })
	for _, c := range cmds {
		fmt.Fprintf(&b, "\n## `%s`\n\n%s\n\n", c.CommandPath(), c.Short)
		b.WriteString("| flag | variable | default | meaning |\n|---|---|---|---|\n")
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			env := "-"
			if keys := f.Annotations[envKey]; len(keys) > 0 {
				env = "`" + keys[0] + "`"
			}
			def := f.DefValue
			if def == "" || def == "[]" {
				def = "-"
			} else {
				def = "`" + def + "`"
			}
			usage := f.Usage
			if i := strings.LastIndex(usage, " ["); i >= 0 && strings.HasSuffix(usage, "]") {
				usage = usage[:i]
			}
			usage = strings.NewReplacer("|", `\|`, "<", `\<`).Replace(usage)
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, env, def, usage)
		})
	}
	return b.String()
}

// writeJSON prints v as indented JSON, the form of every --json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
