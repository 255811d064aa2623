package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// run is the program: it parses args and runs the subcommand they name
// until ctx is done. Nothing below it reads the environment: getenv is the
// only source of JUNCTION_* settings.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "junction",
		Short:         "Junction: an online shop of Go microservices that talk in every way the field uses",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newUpCommand(getenv, stdout),
		newServeCommand(getenv, stderr),
		newVersionCommand(stdout),
		newDeadLettersCommand(getenv, stdout),
		newBenchCommand(getenv, stdout, stderr),
		newChaosCommand(getenv, stdout),
	)
	return root.ExecuteContext(ctx)
}
