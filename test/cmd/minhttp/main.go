// Command minhttp is the smallest net/http server that answers a device
// check-in: it reads the body and answers {"assignment":null}, checking
// nothing. The check-in benchmark drives it with the same load generator
// (vigil-fleetsim) as vigil-server, in the same run, so vigil-server's
// throughput is reported as a share of what this machine's HTTP stack can
// do at all.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"assignment":null}`)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
