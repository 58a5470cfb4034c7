package registry

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// The distribution registry logs through logrus's process-wide standard
// logger. routeLogs silences its own output and forwards its entries to slog:
// errors and warnings as such, info and below at debug level (the registry
// logs every request at info).

var (
	logTarget   atomic.Pointer[slog.Logger]
	installHook sync.Once
)

// routeLogs sends the registry's logrus output to l from now on.
func routeLogs(l *slog.Logger) {
	logTarget.Store(l)
	installHook.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.AddHook(slogHook{})
	})
	level := logrus.WarnLevel
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = logrus.InfoLevel
	}
	logrus.SetLevel(level)
}

// slogHook forwards logrus entries to the current log target.
type slogHook struct{}

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (slogHook) Fire(e *logrus.Entry) error {
	l := logTarget.Load()
	if l == nil {
		return nil
	}
	var level slog.Level
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	default:
		level = slog.LevelDebug
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !l.Enabled(ctx, level) {
		return nil
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]any, 0, 2*len(keys)+2)
	attrs = append(attrs, "component", "distribution")
	for _, k := range keys {
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, k, v)
	}
	l.Log(ctx, level, "registry: "+e.Message, attrs...)
	return nil
}
