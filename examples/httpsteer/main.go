// Command httpsteer serves an HTTP handler that steers every request on its
// own: the query picks the strengths and α, and concurrent requests share
// one batch of the model's engine.
//
//	go run ./examples/httpsteer -steer steer.gguf &
//	curl 'localhost:8090/generate?prompt=How+was+your+day%3F&strength=positivity=2&global=1'
package main

import (
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/steer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	model := flag.String("model", "", "GGUF model (default: the cached default model)")
	steerFile := flag.String("steer", "steer.gguf", "steering file")
	flag.Parse()
	m, err := matsteer.Open(*model, matsteer.Options{Parallel: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	s, err := m.LoadSteering(*steerFile)
	if err != nil {
		log.Fatal(err)
	}

	http.HandleFunc("GET /generate", func(w http.ResponseWriter, r *http.Request) {
		q, st := r.URL.Query(), matsteer.Steer{Files: []*matsteer.Steering{s}}
		var err error
		if st.Strengths, err = steer.ParseStrengths([]string{q.Get("strength")}); err == nil && q.Has("global") {
			st.Global, err = strconv.ParseFloat(q.Get("global"), 64)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		wrote := false
		_, err = m.Generate(r.Context(), q.Get("prompt"), matsteer.GenerateOptions{MaxTokens: 128, Steer: st}, func(text string) error {
			wrote = true
			if _, err := io.WriteString(w, text); err != nil {
				return err
			}
			return http.NewResponseController(w).Flush()
		})
		switch {
		case err == nil || wrote: // an error after the first byte can only cut the text short
		case errors.Is(err, matsteer.ErrUnknownAttribute) || errors.Is(err, matsteer.ErrContextFull):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case errors.Is(err, matsteer.ErrQueueFull):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	log.Printf("listening on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
