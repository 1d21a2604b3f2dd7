package testenv

import (
	"os/exec"
	"syscall"
	"time"
)

// process is a server a test runs: its command, its output, and a channel
// closed when it has exited.
type process struct {
	cmd    *exec.Cmd
	output *Buffer
	exited chan struct{}
}

// startProcess starts a command, its output gathered for the test's log.
func startProcess(name string, args ...string) (*process, error) {
	p := &process{cmd: exec.Command(name, args...), output: &Buffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits for the exit, killing the process if it
// has not exited after timeout; it reports whether it had to.
func (p *process) stop(timeout time.Duration) (killed bool) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		return true
	}
}
