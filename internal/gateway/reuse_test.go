package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Concurrent requests through one gateway, with and without bodies, each
// reach the replica with exactly their own path, headers and body.
func TestGateway_forwardedRequestsDoNotLeak(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s|%s|%s|%s|%s", r.URL.RequestURI(), r.Header.Get("X-Req"), r.Header.Get("X-Odd"),
				r.Header.Get("X-Forwarded-For"), body)
		}))
		t.Cleanup(backend.Close)
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "r1", Node: "node3", Address: strings.TrimPrefix(backend.URL, "http://")}})

		var wg sync.WaitGroup
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					id := fmt.Sprintf("%d-%d", c, i)
					method, body := "GET", ""
					if i%3 == 0 {
						method, body = "POST", "body-"+id
					}
					req, _ := http.NewRequest(method, fx.url+"/p/"+id+"?q="+id, strings.NewReader(body))
					if body == "" {
						req.Body, req.ContentLength = nil, 0
					}
					req.Host = "hello.default"
					req.Header.Set("X-Req", id)
					odd := ""
					if i%2 == 1 {
						odd = "odd-" + id
						req.Header.Set("X-Odd", odd)
						req.Header.Set("X-Forwarded-For", "10.0.0."+fmt.Sprint(c))
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					xff := "127.0.0.1"
					if odd != "" {
						xff = "10.0.0." + fmt.Sprint(c) + ", 127.0.0.1"
					}
					want := fmt.Sprintf("/p/%s?q=%s|%s|%s|%s|%s", id, id, id, odd, xff, body)
					if string(got) != want {
						t.Errorf("request %s: backend saw %q, want %q", id, got, want)
					}
				}
			}()
		}
		wg.Wait()
	})
}
