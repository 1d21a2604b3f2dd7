package logs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A segment is one file of an app's log. An app's log is a directory of
// append-only segment files named by a sequence number, 00000001.log,
// 00000002.log, ...; the newest one is appended to, the others are sealed.
type segment struct {
	seq  uint64
	size int64 // bytes of whole records; for the newest, as of the last Append
}

// segmentExt ends every segment file's name.
const segmentExt = ".log"

// Block sizes for reading a segment backward: the first read is small, for
// a short tail, and each next one doubles, up to the largest.
const (
	firstBlock = 8 << 10
	lastBlock  = 256 << 10
)

// segmentName is the file name of segment seq.
func segmentName(seq uint64) string {
	return fmt.Sprintf("%08d%s", seq, segmentExt)
}

// parseSegmentName returns the sequence number of a segment file's name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil && seq > 0
}

// listSegments returns the segments in dir, oldest first. A missing dir has
// none.
func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range entries {
		seq, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		segs = append(segs, segment{seq: seq, size: fi.Size()})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	return segs, nil
}

// repairSegment cuts a torn last record off the segment file at path, of
// size bytes: the bytes after its last newline, which a crash in the middle
// of a write leaves, and then the last line if it is not a record. It
// returns the size left.
func repairSegment(path string, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()

	// The end of the last newline.
	end := size
	buf := make([]byte, firstBlock)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}

	sc := newBackScanner(f, end)
	if rec, ok := sc.prev(); ok {
		if _, err := parseRecord(rec, ""); err != nil {
			end -= int64(len(rec)) + 1
		}
	}
	if sc.err != nil {
		return 0, sc.err
	}
	if end == size {
		return size, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	return end, nil
}

// backScanner reads a segment's records from a given end backward, reading
// the file in blocks, so that it holds one block and one record at most.
type backScanner struct {
	f   *os.File
	off int64  // file offset of buf[0]
	buf []byte // the records not yet returned, a prefix of mem
	mem []byte
	blk int64
	err error
}

// newBackScanner returns a scanner of f's records that end at end, which
// must be the end of a record (or 0).
func newBackScanner(f *os.File, end int64) *backScanner {
	return &backScanner{f: f, off: end, blk: firstBlock}
}

// prev returns the record before the ones already returned, without its
// newline, and false at the start of the file or on a read error, which
// err then holds. The record is valid until the next call.
func (s *backScanner) prev() ([]byte, bool) {
	for {
		if len(s.buf) > 0 {
			body := s.buf[:len(s.buf)-1] // without the record's newline
			if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
				s.buf = s.buf[:i+1]
				return body[i+1:], true
			}
			if s.off == 0 {
				s.buf = s.buf[:0]
				return body, true
			}
		} else if s.off == 0 {
			return nil, false
		}
		if err := s.fill(); err != nil {
			s.err = err
			return nil, false
		}
	}
}

// fill reads the block before buf.
func (s *backScanner) fill() error {
	n := min(s.blk, s.off)
	s.blk = min(2*s.blk, lastBlock)
	need := int(n) + len(s.buf)
	if cap(s.mem) < need {
		mem := make([]byte, need)
		copy(mem[n:], s.buf)
		s.mem = mem
	} else {
		s.mem = s.mem[:need]
		copy(s.mem[n:], s.buf) // buf is a prefix of mem: copy moves it up
	}
	if _, err := s.f.ReadAt(s.mem[:n], s.off-n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
		return err
	}
	s.off -= n
	s.buf = s.mem
	return nil
}
