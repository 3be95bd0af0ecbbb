// nats.go side of the interop tests (Debian's nats.go 1.22.1, built in GOPATH mode).
// Prints READY once subscribed, then one JSON line per message.
//
// Usage: interop URL sub SUBJECT COUNT | pub SUBJECT COUNT | serve SUBJECT COUNT | request SUBJECT PAYLOAD
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

func show(m *nats.Msg) string {
	h := map[string][]string{}
	for k, v := range m.Header {
		h[k] = v
	}
	b, _ := json.Marshal(map[string]interface{}{"subject": m.Subject, "reply": m.Reply, "data": string(m.Data), "headers": h})
	return string(b)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// subscribeReady subscribes synchronously, makes sure the server has the subscription, and says READY.
func subscribeReady(nc *nats.Conn, subject string) *nats.Subscription {
	sub, err := nc.SubscribeSync(subject)
	must(err)
	must(nc.Flush())
	fmt.Println("READY")
	return sub
}

func main() {
	url, mode, subject, arg := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	nc, err := nats.Connect(url)
	must(err)
	defer nc.Close()
	switch mode {
	case "sub":
		n, _ := strconv.Atoi(arg)
		sub := subscribeReady(nc, subject)
		for i := 0; i < n; i++ {
			m, err := sub.NextMsg(10 * time.Second)
			must(err)
			fmt.Println(show(m))
		}
	case "pub":
		n, _ := strconv.Atoi(arg)
		for i := 0; i < n; i++ {
			m := nats.NewMsg(subject)
			m.Data = []byte(fmt.Sprintf("go-%d", i))
			m.Header.Add("X-Peer", "nats.go")
			m.Header.Add("X-Multi", "one")
			m.Header.Add("X-Multi", "two")
			must(nc.PublishMsg(m))
		}
		must(nc.Flush())
	case "serve":
		n, _ := strconv.Atoi(arg)
		sub := subscribeReady(nc, subject)
		for i := 0; i < n; i++ {
			m, err := sub.NextMsg(10 * time.Second)
			must(err)
			r := nats.NewMsg(m.Reply)
			r.Data = append([]byte("go:"), m.Data...)
			r.Header.Set("X-Answered-By", "nats.go")
			r.Header.Set("X-Seen", m.Header.Get("X-Ask"))
			must(nc.PublishMsg(r))
		}
		must(nc.Flush())
	case "request":
		m := nats.NewMsg(subject)
		m.Data = []byte(arg)
		m.Header.Set("X-Ask", "from-go")
		r, err := nc.RequestMsg(m, 10*time.Second)
		must(err)
		fmt.Println(show(r))
	}
}
