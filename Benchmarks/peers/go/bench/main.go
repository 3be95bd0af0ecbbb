// nats.go (Debian's 1.22.1) side of the benchmark: the same modes and output as nats-bench.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func connect(url string) *nats.Conn {
	nc, err := nats.Connect(url)
	must(err)
	return nc
}

func main() {
	url, mode := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	size, _ := strconv.Atoi(os.Args[4])
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a'
	}
	switch mode {
	case "pub":
		nc := connect(url)
		start := time.Now()
		for i := 0; i < n; i++ {
			must(nc.Publish("bench.pub", payload))
		}
		must(nc.FlushTimeout(60 * time.Second))
		fmt.Printf("{\"client\":\"go\",\"mode\":\"pub\",\"msgs_per_sec\":%f}\n", float64(n)/time.Since(start).Seconds())
	case "pubsub":
		sc, pc := connect(url), connect(url)
		done := make(chan time.Time)
		count := 0
		sub, err := sc.Subscribe("bench.pubsub", func(m *nats.Msg) {
			count++
			if count == n {
				done <- time.Now()
			}
		})
		must(err)
		must(sub.SetPendingLimits(-1, -1))
		must(sc.Flush())
		start := time.Now()
		for i := 0; i < n; i++ {
			must(pc.Publish("bench.pubsub", payload))
		}
		must(pc.FlushTimeout(60 * time.Second))
		end := <-done
		fmt.Printf("{\"client\":\"go\",\"mode\":\"pubsub\",\"msgs_per_sec\":%f}\n", float64(n)/end.Sub(start).Seconds())
	case "jspub":
		nc := connect(url)
		js, err := nc.JetStream(nats.PublishAsyncMaxPending(4000))
		must(err)
		js.DeleteStream("BENCH_GO")
		_, err = js.AddStream(&nats.StreamConfig{Name: "BENCH_GO", Subjects: []string{"bench.js.go"}, Storage: nats.MemoryStorage})
		must(err)
		start := time.Now()
		for i := 0; i < n; i++ {
			_, err := js.PublishAsync("bench.js.go", payload)
			must(err)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(120 * time.Second):
			must(fmt.Errorf("acks did not complete"))
		}
		fmt.Printf("{\"client\":\"go\",\"mode\":\"jspub\",\"msgs_per_sec\":%f}\n", float64(n)/time.Since(start).Seconds())
		must(js.DeleteStream("BENCH_GO"))
	case "kvput", "kvget":
		nc := connect(url)
		js, err := nc.JetStream()
		must(err)
		js.DeleteKeyValue("bench_go")
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "bench_go", Storage: nats.MemoryStorage})
		must(err)
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = fmt.Sprintf("key.%d", i)
			_, err := kv.Put(keys[i], payload)
			must(err)
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			if mode == "kvput" {
				_, err = kv.Put(keys[i%len(keys)], payload)
			} else {
				_, err = kv.Get(keys[i%len(keys)])
			}
			must(err)
		}
		fmt.Printf("{\"client\":\"go\",\"mode\":\"%s\",\"ops_per_sec\":%f}\n", mode, float64(n)/time.Since(start).Seconds())
		must(js.DeleteKeyValue("bench_go"))
	case "jstrigger":
		// A stream trigger done by hand: N messages already in a stream, a durable pull consumer fetching up
		// to `size` (the batch) into the free slots of `size` in flight, each message's trivial work and its
		// confirmed ack (AckSync) on a goroutine of its own; a slot is refilled as soon as it frees, as the
		// node runs a trigger with max_batch = max_concurrency = size.
		nc := connect(url)
		js, err := nc.JetStream()
		must(err)
		js.DeleteStream("TRIGGER_GO")
		_, err = js.AddStream(&nats.StreamConfig{Name: "TRIGGER_GO", Subjects: []string{"trigger.go"}, Storage: nats.MemoryStorage})
		must(err)
		for i := 0; i < n; i++ {
			must(nc.Publish("trigger.go", []byte(strconv.Itoa(i))))
		}
		must(nc.Flush())
		for {
			info, err := js.StreamInfo("TRIGGER_GO")
			must(err)
			if info.State.Msgs == uint64(n) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		sub, err := js.PullSubscribe("trigger.go", "go_trigger", nats.AckExplicit(), nats.MaxDeliver(5))
		must(err)
		slots := make(chan struct{}, size)
		var wg sync.WaitGroup
		fetched := 0
		var start time.Time
		for fetched < n {
			slots <- struct{}{} // at least one free slot, then every other free one
			free := 1
		fill:
			for free < size {
				select {
				case slots <- struct{}{}:
					free++
				default:
					break fill
				}
			}
			msgs, err := sub.Fetch(free, nats.MaxWait(5*time.Second))
			must(err)
			if start.IsZero() {
				start = time.Now()
			}
			for i := len(msgs); i < free; i++ {
				<-slots
			}
			for _, m := range msgs {
				wg.Add(1)
				go func(m *nats.Msg) {
					defer wg.Done()
					_ = len(m.Data) // the trivial work
					must(m.AckSync())
					<-slots
				}(m)
			}
			fetched += len(msgs)
		}
		wg.Wait()
		fmt.Printf("{\"client\":\"go\",\"mode\":\"jstrigger\",\"batch\":%d,\"msgs_per_sec\":%f}\n", size, float64(n)/time.Since(start).Seconds())
		must(js.DeleteStream("TRIGGER_GO"))
	case "jstriggerlatency":
		// Publish-to-ack, one message at a time: published (its PubAck awaited), fetched by a waiting pull and
		// acked with AckSync; stamped when the ack is seen at the server ($JS.ACK, watched by the publisher's
		// connection), as the Nex side is. The first 50 warm up.
		nc, cc := connect(url), connect(url)
		js, err := nc.JetStream()
		must(err)
		cjs, err := cc.JetStream()
		must(err)
		js.DeleteStream("TRIGGER_GO")
		_, err = js.AddStream(&nats.StreamConfig{Name: "TRIGGER_GO", Subjects: []string{"trigger.go"}, Storage: nats.MemoryStorage})
		must(err)
		acked := make(chan time.Time, 1)
		_, err = nc.Subscribe("$JS.ACK.TRIGGER_GO.>", func(m *nats.Msg) {
			if string(m.Data) == "+ACK" {
				acked <- time.Now()
			}
		})
		must(err)
		must(nc.Flush())
		sub, err := cjs.PullSubscribe("trigger.go", "go_trigger", nats.AckExplicit())
		must(err)
		go func() {
			for {
				msgs, err := sub.Fetch(1, nats.MaxWait(time.Second))
				if err == nats.ErrTimeout {
					continue
				}
				if err != nil {
					return
				}
				for _, m := range msgs {
					_ = len(m.Data) // the trivial work
					must(m.AckSync())
				}
			}
		}()
		lat := make([]float64, 0, n)
		for i := 0; i < n+50; i++ {
			t0 := time.Now()
			_, err := js.Publish("trigger.go", payload)
			must(err)
			t1 := <-acked
			if i >= 50 {
				lat = append(lat, float64(t1.Sub(t0).Nanoseconds())/1000)
			}
		}
		sort.Float64s(lat)
		fmt.Printf("{\"client\":\"go\",\"mode\":\"jstriggerlatency\",\"p50_us\":%f,\"p99_us\":%f}\n", lat[n/2], lat[n*99/100])
		must(js.DeleteStream("TRIGGER_GO"))
	case "reqrep":
		rc, qc := connect(url), connect(url)
		_, err := rc.Subscribe("bench.svc", func(m *nats.Msg) { m.Respond(m.Data) })
		must(err)
		must(rc.Flush())
		warm := n
		if warm > 1000 {
			warm = 1000
		}
		for i := 0; i < warm; i++ {
			_, err := qc.Request("bench.svc", payload, 10*time.Second)
			must(err)
		}
		lat := make([]float64, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			_, err := qc.Request("bench.svc", payload, 10*time.Second)
			must(err)
			lat[i] = float64(time.Since(t0).Nanoseconds()) / 1000
		}
		sort.Float64s(lat)
		fmt.Printf("{\"client\":\"go\",\"mode\":\"reqrep\",\"p50_us\":%f,\"p99_us\":%f}\n", lat[n/2], lat[n*99/100])
	}
}
