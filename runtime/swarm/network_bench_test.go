package swarm_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/runtime/swarm"
)

// BenchmarkRuntime_CreateAppNetwork measures Create until the task runs on
// a worker, interleaved: on the node's default bridge (no app); on an app
// network while another one-off of the app runs on the node (warm); on an
// app network the swarm has but no one-off of the app uses on the node,
// which then sets it up again (cold); and for a new app, whose network is
// made first.
func BenchmarkRuntime_CreateAppNetwork(b *testing.B) {
	s := testenv.StartSwarm(b, testenv.SwarmOptions{Nodes: 2})
	instance := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	w := s.Nodes[1]
	rt, err := swarm.New(swarm.Options{
		Manager:   s.Manager().TCPHost,
		TLS:       swarm.TLS{CACert: s.TLS.CACert, Cert: s.TLS.Cert, Key: s.TLS.Key},
		Instance:  instance,
		Isolation: docker.DefaultIsolation(instance),
		Placement: []string{"node.id==" + w.ID},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	create := func(app string) (time.Duration, string) {
		spec := oneoff.Spec{Name: fmt.Sprintf("bench-%d", time.Now().UnixNano()), Image: s.Image, App: app,
			Cmd: []string{"true"}, Labels: map[string]string{"oneoffd.test": instance}}
		start := time.Now()
		p, err := rt.Create(ctx, spec)
		if err != nil {
			b.Fatalf("create: %v", err)
		}
		return time.Since(start), p.ID
	}
	once := func(app string) time.Duration {
		took, id := create(app)
		if err := rt.Remove(ctx, id); err != nil {
			b.Fatalf("remove: %v", err)
		}
		return took
	}
	once("")
	once("cold") // its network made
	_, keeper := create("warm")
	defer rt.Remove(ctx, keeper)
	kinds := []string{"bridge", "warm", "cold", "newapp"}
	took := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		took["bridge"] = append(took["bridge"], once(""))
		took["warm"] = append(took["warm"], once("warm"))
		took["cold"] = append(took["cold"], once("cold"))
		took["newapp"] = append(took["newapp"], once(fmt.Sprintf("new%d", i)))
	}
	b.StopTimer()
	for _, k := range kinds {
		d := took[k]
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, k+"-median-ms")
	}
	if err := rt.Remove(ctx, keeper); err != nil {
		b.Errorf("remove: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := rt.Prune(ctx); err != nil {
			b.Errorf("prune: %v", err)
		}
		list, err := s.Manager().Client(b).NetworkList(ctx, network.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+instance))})
		if err == nil && len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("app networks left after a minute of prunes: %d, %v", len(list), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
