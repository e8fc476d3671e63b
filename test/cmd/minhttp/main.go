// Command minhttp is the smallest net/http server that answers a device
// check-in: it reads the body and answers {"assignment":null}, checking
// nothing. A session request gets a well-formed session (a fresh X25519
// key and a ticket nobody checks), so a device client uses one as it does
// with vigil-server. The check-in benchmark drives it with the same load generator
// (vigil-fleetsim) as vigil-server, in the same run, so vigil-server's
// throughput is reported as a share of what this machine's HTTP stack can
// do at all.
package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"

	"github.com/vigil-ota/vigil/api"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	http.HandleFunc(api.RouteDeviceSession, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.Session{ServerPublicKey: base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()),
			Ticket: "unchecked", ExpiresInSeconds: 3600})
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"assignment":null}`)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
