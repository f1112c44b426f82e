package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the watcher waits after the last file event
// before it looks at the files: editors and ConfigMap updates write in
// several steps, and the config must be read once, whole.
const DefaultDebounce = 250 * time.Millisecond

// hashFiles hashes the files a collector or listener reports reading
// (collectors.FileReader, listeners.FileReader), by absolute path: the
// OpenStack client's clouds.yaml search path starts in the working
// directory.
func hashFiles(unit any) map[string]string {
	r, ok := unit.(interface{ Files() []string })
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, f := range r.Files() {
		if a, err := filepath.Abs(f); err == nil {
			f = a
		}
		out[f] = fileHash(f)
	}
	return out
}

// filesChanged says whether any of the files differs from its hash.
func filesChanged(files map[string]string) bool {
	for f, h := range files {
		if fileHash(f) != h {
			return true
		}
	}
	return false
}

// fileHash is the SHA-256 of a file's content, "" when it cannot be read.
func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// watcher follows the config file, the files it points at and the data
// files of collectors (a static topology), through fsnotify watches on their
// directories: an editor's write-and-rename and a Kubernetes ConfigMap's
// "..data" symlink swap replace the file, which a watch on the file itself
// would lose.
type watcher struct {
	sc  *Sidecar
	fsw *fsnotify.Watcher

	dirs     map[string]map[string]bool // watched directory -> names of interest
	seen     map[string]string          // file -> hash last looked at
	config   map[string]bool            // files whose change means a reload
	data     map[string][]string        // data file -> collectors to poll
	polls    sync.WaitGroup
	pollCtx  context.Context
	stopPoll context.CancelFunc
}

// newFSWatcher is fsnotify.NewWatcher; a test replaces it to fail as a
// process at its descriptor limit does.
var newFSWatcher = fsnotify.NewWatcher

func newWatcher(sc *Sidecar) (*watcher, error) {
	fsw, err := newFSWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{sc: sc, fsw: fsw, dirs: map[string]map[string]bool{}, seen: map[string]string{}}
	w.pollCtx, w.stopPoll = context.WithCancel(context.Background())
	if p := sc.o.ConfigPath; p != "" {
		// Compare with what was loaded, so that an edit made between the
		// load and the first watch is not missed.
		abs, _ := filepath.Abs(p)
		w.seen[abs] = sc.sup.config().Hash
	}
	w.refresh()
	return w, nil
}

func (w *watcher) close() {
	w.stopPoll()
	w.polls.Wait()
	w.fsw.Close()
}

// refresh recomputes the files of interest from the running config and
// adjusts the directory watches.
func (w *watcher) refresh() {
	w.config, w.data = map[string]bool{}, map[string][]string{}
	if p := w.sc.o.ConfigPath; p != "" {
		abs, _ := filepath.Abs(p)
		w.config[abs] = true
	}
	for _, u := range w.sc.sup.unitList() {
		for f := range u.files {
			w.config[f] = true
		}
		if u.runner == nil {
			continue
		}
		if p, ok := u.runner.Collector().(interface{ Path() string }); ok {
			w.data[p.Path()] = append(w.data[p.Path()], u.name)
		}
	}
	dirs := map[string]map[string]bool{}
	add := func(f string) {
		for _, p := range []string{f, resolved(f)} {
			d, b := filepath.Dir(p), filepath.Base(p)
			if dirs[d] == nil {
				dirs[d] = map[string]bool{}
			}
			dirs[d][b] = true
		}
	}
	for f := range w.config {
		add(f)
		if _, ok := w.seen[f]; !ok {
			w.seen[f] = fileHash(f)
		}
	}
	for f := range w.data {
		add(f)
		if _, ok := w.seen[f]; !ok {
			w.seen[f] = fileHash(f)
		}
	}
	for d := range w.dirs {
		if dirs[d] == nil {
			w.fsw.Remove(d)
		}
	}
	for d := range dirs {
		if w.dirs[d] == nil {
			if err := w.fsw.Add(d); err != nil {
				// A directory that does not exist yet (clouds.yaml search
				// path) is not an error.
				w.sc.log.Debug("cannot watch directory", "dir", d, "err", err)
				delete(dirs, d)
			}
		}
	}
	w.dirs = dirs
}

// resolved follows symlinks (a ConfigMap's config.yaml -> ..data/config.yaml).
func resolved(f string) string {
	if r, err := filepath.EvalSymlinks(f); err == nil {
		return r
	}
	return f
}

// relevant says whether an event may have changed a file of interest.
func (w *watcher) relevant(ev fsnotify.Event) bool {
	d, b := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	names := w.dirs[d]
	return names != nil && (names[b] || strings.HasPrefix(b, ".."))
}

// changed returns the files of interest whose content differs from what was
// last seen, remembering the new content.
func (w *watcher) changed(files []string) []string {
	var out []string
	for _, f := range files {
		if h := fileHash(f); h != w.seen[f] {
			w.seen[f] = h
			out = append(out, f)
		}
	}
	return out
}

// check runs after a burst of events: a changed config (or file it points
// at) is reloaded once; a changed data file makes its collectors poll now.
func (w *watcher) check(runCtx context.Context) {
	if ch := w.changed(slices.Sorted(maps.Keys(w.config))); len(ch) > 0 {
		w.sc.log.Info("config files changed: reloading", "files", ch)
		w.sc.reload(runCtx)
	}
	for _, f := range w.changed(slices.Sorted(maps.Keys(w.data))) {
		for _, name := range w.data[f] {
			w.poll(name, f)
		}
	}
	// A symlink swap may have moved a file to a new directory.
	w.refresh()
}

// poll asks a collector to poll now, without waiting for it.
func (w *watcher) poll(name, file string) {
	r := w.sc.sup.runner(name)
	if r == nil {
		return
	}
	w.sc.log.Info("data file changed: polling now", "collector", name, "file", file)
	w.polls.Add(1)
	go func() {
		defer w.polls.Done()
		ctx, cancel := context.WithTimeout(w.pollCtx, time.Minute)
		defer cancel()
		r.Collect(ctx, false) // the runner records and logs the outcome
	}()
}

// run follows file events and forced reloads until ctx ends.
func (w *watcher) run(ctx, runCtx context.Context) {
	debounce := w.sc.o.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.sc.o.Reload:
			w.sc.reload(runCtx)
			w.changed(slices.Sorted(maps.Keys(w.config))) // what was just loaded is seen
			w.refresh()
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.sc.log.Warn("file watcher error", "err", err)
			timer.Reset(debounce) // events may have been lost: look anyway
		case <-timer.C:
			w.check(runCtx)
		}
	}
}
