package testenv

import (
	"os/exec"
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
