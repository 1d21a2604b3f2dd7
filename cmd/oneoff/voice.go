package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// This file puts cobra's and pflag's messages in the CLI's words: one
// line that says what was wrong and what to type instead.

// flagError rewrites a flag parsing error of cmd.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	help := fmt.Sprintf("(%s --help lists them)", cmd.CommandPath())
	switch {
	case strings.HasPrefix(msg, "unknown flag: "):
		return fmt.Errorf("%s has no flag %s %s", cmd.CommandPath(), strings.TrimPrefix(msg, "unknown flag: "), help)
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// unknown shorthand flag: 'x' in -xyz
		name := msg[strings.LastIndex(msg, "'")-1 : strings.LastIndex(msg, "'")]
		return fmt.Errorf("%s has no flag -%s %s", cmd.CommandPath(), name, help)
	case strings.HasPrefix(msg, "flag needs an argument: "):
		name := strings.TrimPrefix(msg, "flag needs an argument: ")
		if strings.HasPrefix(name, "'") { // 'a' in -a
			name = "-" + name[1:2]
		}
		return fmt.Errorf("%s needs a value, as in %s", name, flagExample(cmd, name))
	case strings.HasPrefix(msg, "invalid argument "):
		// invalid argument "x" for "-n, --lines" flag: reason
		var value, flag string
		rest := strings.TrimPrefix(msg, "invalid argument ")
		if _, err := fmt.Sscanf(rest, "%q for %q flag:", &value, &flag); err == nil {
			reason := rest[strings.Index(rest, " flag: ")+len(" flag: "):]
			if i := strings.LastIndex(flag, "--"); i >= 0 {
				flag = flag[i:]
			}
			return fmt.Errorf("%s %q: %s", flag, value, reason)
		}
	}
	return err
}

// flagExample shows a flag with a value, for a message.
func flagExample(cmd *cobra.Command, name string) string {
	long := strings.TrimLeft(name, "-")
	f := cmd.Flags().Lookup(long)
	if f == nil && len(long) == 1 {
		f = cmd.Flags().ShorthandLookup(long)
	}
	if f == nil {
		return name + " VALUE"
	}
	if f.Name == "app" {
		if !cmd.HasParent() {
			return "oneoff --app APP COMMAND"
		}
		return "oneoff --app APP " + cmd.Name() + " ..."
	}
	return fmt.Sprintf("--%s %s", f.Name, strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")))
}

// commandError rewrites what cobra says of a command line it cannot map to
// a command.
func commandError(root *cobra.Command, err error) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, "unknown command ") {
		return err
	}
	var name, parent string
	if _, serr := fmt.Sscanf(strings.TrimPrefix(msg, "unknown command "), "%q for %q", &name, &parent); serr != nil {
		return err
	}
	if parent != root.Name() {
		// A command that takes no arguments was given some.
		return fmt.Errorf("%s takes no argument %q (%s --help tells what it takes)", parent, name, parent)
	}
	hint := "oneoff --help lists the commands"
	if s := root.SuggestionsFor(name); len(s) > 0 {
		hint = fmt.Sprintf("did you mean %q? %s", s[0], hint)
	}
	return fmt.Errorf("there is no command %q: %s", name, hint)
}

// requiredFlags rewrites cobra's `required flag(s) "image" not set`.
func requiredFlags(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, "required flag(s) ") {
		return err
	}
	names := strings.TrimSuffix(strings.TrimPrefix(msg, "required flag(s) "), " not set")
	var flags []string
	for _, n := range strings.Split(names, ", ") {
		n = strings.Trim(n, `"`)
		flags = append(flags, "--"+n+" "+strings.ToUpper(n))
	}
	return fmt.Errorf("%s needs %s", cmd.Name(), strings.Join(flags, " and "))
}

// oneArg is the Args of a command that takes one thing, what: a missing
// or extra argument says what it needs and how to write it.
func oneArg(what, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return fmt.Errorf("%s needs %s: %s", cmd.Name(), what, usage)
		case len(args) > 1:
			return fmt.Errorf("%s takes one argument, %s, not %d: %s", cmd.Name(), what, len(args), usage)
		}
		return nil
	}
}

// noArgs is the Args of a command that takes none.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return fmt.Errorf("%s takes no argument %q: %s", cmd.Name(), args[0], cmd.UseLine())
}

// errFlagsAfterCommand is the hint for flags written after run's command,
// where they are the command's own.
var errFlagsAfterCommand = errors.New("flags go before the command: oneoff --app APP run CMD")
