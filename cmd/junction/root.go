package main

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// run is the program: it parses args and runs the subcommand they name
// until ctx is done. Nothing below it reads the environment: getenv is the
// only source of JUNCTION_* settings and of the OTEL_* ones that decide
// whether and how a service traces (the OTLP exporters read their
// endpoint's details, OTEL_EXPORTER_OTLP_*, from the process environment
// themselves).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := newRoot(getenv, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		// cobra's own error, before any command runs.
		err = asUsage(err)
	}
	return err
}

// newRoot is the command tree.
func newRoot(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "junction",
		Short:         "Junction: an online shop of Go microservices that talk in every way the field uses",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command's JUNCTION_* variables, checked before it runs.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd.Flags(), getenv) },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsage(err) })
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newUpCommand(getenv, stdout),
		newServeCommand(getenv, stderr),
		newVersionCommand(stdout),
		newDeadLettersCommand(stdout),
		newKeysCommand(stdout),
		newBenchCommand(stdout, stderr),
		newChaosCommand(stdout),
	)
	return root
}
