package docker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

// logReader parses the engine's log stream as asked with timestamps: each
// message is "TIMESTAMP SP DATA". Without a TTY every message comes in a
// frame of the engine's multiplexed format, which says its stream and
// length; with a TTY messages simply follow each other, each ending with a
// newline.
type logReader struct {
	rc  io.ReadCloser
	br  *bufio.Reader
	tty bool
	hdr [8]byte
	buf []byte
}

func newLogReader(rc io.ReadCloser, tty bool) *logReader {
	return &logReader{rc: rc, br: bufio.NewReaderSize(&coalescer{r: rc}, 256<<10), tty: tty}
}

// coalescer pauses briefly after a short read. A followed log arrives one
// small message at a time; reading each as it comes costs a system call
// and a wake-up per line, while a millisecond's wait lets hundreds gather.
type coalescer struct {
	r    io.Reader
	last int
}

// shortRead is a read small enough to wait before the next one.
const shortRead = 2048

func (c *coalescer) Read(p []byte) (int, error) {
	if c.last > 0 && c.last < shortRead {
		time.Sleep(time.Millisecond)
	}
	n, err := c.r.Read(p)
	c.last = n
	return n, err
}

// Next returns the next entry; its Data is valid until the next call.
func (r *logReader) Next() (oneoff.LogEntry, error) {
	var stream string
	var msg []byte
	if r.tty {
		line, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.buf = append(r.buf[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = r.br.ReadSlice('\n')
				r.buf = append(r.buf, line...)
			}
			line = r.buf
		}
		if err != nil && (err != io.EOF || len(line) == 0) {
			return oneoff.LogEntry{}, err
		}
		stream, msg = "stdout", line
	} else {
		if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
			return oneoff.LogEntry{}, err
		}
		switch r.hdr[0] {
		case 1:
			stream = "stdout"
		case 2:
			stream = "stderr"
		default:
			stream = "stdout" // 0 (stdin) or 3 (system error) are not expected here
		}
		n := binary.BigEndian.Uint32(r.hdr[4:])
		if cap(r.buf) < int(n) {
			r.buf = make([]byte, n)
		}
		msg = r.buf[:n]
		if _, err := io.ReadFull(r.br, msg); err != nil {
			return oneoff.LogEntry{}, fmt.Errorf("read log message: %w", err)
		}
	}
	sp := bytes.IndexByte(msg, ' ')
	if sp < 0 {
		return oneoff.LogEntry{}, fmt.Errorf("log message without a timestamp: %.40q", msg)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(msg[:sp]))
	if err != nil {
		return oneoff.LogEntry{}, fmt.Errorf("log message timestamp: %w", err)
	}
	return oneoff.LogEntry{Time: ts, Stream: stream, Data: msg[sp+1:]}, nil
}

func (r *logReader) Close() error { return r.rc.Close() }
