package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/publishers"
)

// watchStreamCmd is `watch --stream URL NAME [--since N]`: the changes of a
// RabbitMQ stream, deduplicated by seq. Flags may come after NAME too.
func watchStreamCmd(fs *flag.FlagSet, url string, types typeList, since *int64, env Env) error {
	if fs.NArg() == 0 {
		return usageError{errors.New("--stream needs the stream's NAME")}
	}
	name := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return usageError{err}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return watchStream(ctx, url, name, *since, types, env)
}

// watchStream prints each change of the stream after since (since < 0: from
// the first message) and follows it until ctx ends, reconnecting after the
// last seq printed. A resync marker (changes pruned before they were
// published) and a new database id (the sidecar's database was replaced:
// seqs start over) are told on stderr; printing goes on.
func watchStream(ctx context.Context, url, name string, since int64, types []string, env Env) error {
	last, id := since, ""
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	out := env.Stdout
	for ctx.Err() == nil {
		t0 := time.Now()
		err := publishers.ReadStream(ctx, publishers.ReadOptions{URL: url, Stream: name, Since: last}, func(m publishers.Message) error {
			if id != m.DatabaseID {
				if id == "" {
					fmt.Fprintf(env.Stderr, "watch: stream %s: database %s, after seq %d\n", name, m.DatabaseID, last)
				} else {
					fmt.Fprintf(env.Stderr, "watch: stream %s: database changed from %s to %s: seqs start over; resynchronize (get-all on that sidecar)\n", name, id, m.DatabaseID)
				}
				id = m.DatabaseID
			}
			last = m.Seq
			if m.Kind == "gap" {
				fmt.Fprintf(env.Stderr, "watch: stream %s: changes %d..%d of database %s are no longer in the stream; resynchronize (get-all on that sidecar)\n", name, m.LostFrom, m.LostThrough, m.DatabaseID)
				return nil
			}
			if m.Resync {
				fmt.Fprintf(env.Stderr, "watch: stream %s: changes %d..%d of database %s were pruned before they were published; resynchronize (get-all on that sidecar)\n", name, m.LostFrom, m.LostThrough, m.DatabaseID)
				return nil
			}
			if len(types) > 0 && !slices.Contains(types, m.Type) {
				return nil
			}
			out.Write(m.Body)
			out.Write([]byte{'\n'})
			if f, ok := out.(*os.File); ok {
				f.Sync()
			}
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(env.Stderr, "watch: stream %s: %v; reconnecting\n", name, err)
		if time.Since(t0) > 10*time.Second {
			retry.Reset() // a session that lasted: the stream is back
		}
		if !backoff.Wait(ctx, retry.Next()) {
			return nil
		}
	}
	return nil
}
