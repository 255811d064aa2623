package main

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// failpoints returns the crash hook of cfg.Failpoints: at a named point
// ("saga.reply.beforeCommit", or "order-service:relay.afterPublish" for
// one service only), with its probability, the process kills itself as
// kill -9 would. Nil without failpoints.
func failpoints(cfg serveConfig, log *slog.Logger) func(string) {
	if len(cfg.Failpoints) == 0 {
		return nil
	}
	return func(point string) {
		p, ok := cfg.Failpoints[cfg.Service+":"+point]
		if !ok {
			p, ok = cfg.Failpoints[point]
		}
		if ok && rand.Float64() < p && failpointBudget(cfg) {
			log.Warn("failpoint: killing this process", "point", point)
			if cfg.flushLog != nil {
				cfg.flushLog() // the line is the fault test's record of the kill
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// failpointBudget reports whether another failpoint may fire: with
// cfg.FailpointMax set, the processes sharing the data folder fire at most
// that many in all (counted in a file), at least 3 s apart, so a fault
// test kills a known number of times, spread over the run, instead of
// crash-looping.
func failpointBudget(cfg serveConfig) bool {
	if cfg.FailpointMax <= 0 {
		return true
	}
	f, err := os.OpenFile(filepath.Join(cfg.Database.DataDir, "failpoints.fired"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Size() >= int64(cfg.FailpointMax) || (st.Size() > 0 && time.Since(st.ModTime()) < 3*time.Second) {
		return false
	}
	_, err = f.Write([]byte{'x'})
	return err == nil
}
