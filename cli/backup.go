package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// dbFlags find the database: --database, else the config's.
type dbFlags struct{ config, database string }

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.config, "config", "", "config file to read the database path from (default config.yaml)")
	fs.StringVar(&d.database, "database", "", "database path (default: from the config)")
}

func (d *dbFlags) path(env Env) (string, error) {
	return flagOrConfig(d.database, d.config, env, func(cfg *config.Config) string { return cfg.Database })
}

// dbAndFile parses backup's or restore's flags and its one FILE argument
// (named what in errors), and finds the database.
func dbAndFile(name, what string, args []string, env Env) (db, file string, err error) {
	fs := newFlagSet(name)
	var d dbFlags
	d.register(fs)
	if file, err = oneFile(fs, args, env, what); err != nil {
		return "", "", err
	}
	db, err = d.path(env)
	return db, file, err
}

// oneFile parses the flags and the one FILE argument.
func oneFile(fs *flag.FlagSet, args []string, env Env, what string) (string, error) {
	if err := parseFlags(fs, args, env); err != nil {
		return "", err
	}
	switch fs.NArg() {
	case 0:
		return "", usageError{fmt.Errorf("%s is required", what)}
	case 1:
		return fs.Arg(0), nil
	}
	return "", usageError{fmt.Errorf("unexpected argument %q: one %s (flags go before it)", fs.Arg(1), what)}
}

// backup copies the database in this process, on a read-only connection,
// rather than asking the running synchronizer over the socket: the file is
// then written by the user who runs the command, where that user may write,
// and no socket client (Vitrage's user is one) can make the service write
// files (docs/operations.md, "Backup").
func backup(args []string, env Env) error {
	db, file, err := dbAndFile("backup", "FILE", args, env)
	if err != nil {
		return err
	}
	info, err := store.Backup(context.Background(), db, file)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: %d bytes, %d entities, last seq %d, schema %d, integrity %s (%s)\n",
		info.Path, info.Bytes, info.Entities, info.LastSeq, info.SchemaVersion, info.Integrity, info.Duration.Round(1e6))
	return nil
}

func restore(args []string, env Env) error {
	db, file, err := dbAndFile("restore", "BACKUP", args, env)
	if err != nil {
		return err
	}
	ri, err := store.Restore(context.Background(), db, file)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w (systemctl stop synchronizer)", err)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: restored from %s: %d entities, schema %d, integrity %s\n",
		ri.Path, file, ri.Entities, ri.SchemaVersion, ri.Integrity)
	if ri.Replaced != "" {
		if ri.ReplacedLastSeq >= 0 {
			fmt.Fprintf(env.Stdout, "the replaced database (last seq %d) is now %s: delete it once the restored one runs\n", ri.ReplacedLastSeq, ri.Replaced)
		} else {
			fmt.Fprintf(env.Stdout, "the replaced database could not be read; it is now %s\n", ri.Replaced)
		}
	}
	fmt.Fprintf(env.Stdout, "seqs continue after %d: every consumer gets -32001 on reconnect and resynchronizes with get_all\n", ri.Floor)
	return nil
}
