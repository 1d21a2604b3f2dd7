package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func replayCommand(g *globals) *cobra.Command {
	var (
		speed   float64
		maxIdle time.Duration
	)
	cmd := &cobra.Command{
		Use:   "replay ID",
		Short: "Play back the recording of an attached one-off's session",
		Long: `Play back the recording of an attached one-off's session, in this terminal.

The daemon records sessions when it runs with --record-sessions. The output
is played at its real pace, or --speed times faster; --max-idle shortens the
long pauses. The recording itself (asciicast v2, which asciinema also plays)
is at GET /v1/oneoffs/ID/recording.`,
		Example: `  oneoff replay k3j5c9w2m1q8r7t4
  oneoff replay --speed 4 --max-idle 1s k3j5c9w2m1q8r7t4`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if speed <= 0 {
				return errors.New("--speed must be positive, such as 2 for twice as fast")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			rec, err := c.Recording(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer rec.Close()
			return replay(cmd.Context(), rec, g.out, speed, maxIdle)
		},
	}
	cmd.Flags().Float64Var(&speed, "speed", 1, "play this many times faster than it happened")
	cmd.Flags().DurationVar(&maxIdle, "max-idle", 0, "shorten every pause to at most this long (default: as recorded)")
	return cmd
}

// replay writes an asciicast v2 recording's output to out at its pace.
func replay(ctx context.Context, r io.Reader, out io.Writer, speed float64, maxIdle time.Duration) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	if !sc.Scan() {
		return errors.New("the recording is empty")
	}
	var hdr struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 {
		return errors.New("the recording is not asciicast v2")
	}
	start := time.Now()
	var skipped time.Duration // the pauses cut by maxIdle
	last := 0.0
	for sc.Scan() {
		var ev []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			return fmt.Errorf("the recording has a bad event: %q", sc.Text())
		}
		var at float64
		var code, data string
		if json.Unmarshal(ev[0], &at) != nil || json.Unmarshal(ev[1], &code) != nil || json.Unmarshal(ev[2], &data) != nil {
			return fmt.Errorf("the recording has a bad event: %q", sc.Text())
		}
		if code != "o" {
			continue // what was typed shows in the output already
		}
		if gap := time.Duration((at - last) / speed * float64(time.Second)); maxIdle > 0 && gap > maxIdle {
			skipped += gap - maxIdle
		}
		last = at
		due := start.Add(time.Duration(at/speed*float64(time.Second)) - skipped)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if _, err := io.WriteString(out, data); err != nil {
			return err
		}
	}
	return sc.Err()
}
