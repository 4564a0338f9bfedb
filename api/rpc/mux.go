package rpc

import (
	"net/http"
	"strings"
)

// Mux sends gRPC requests (HTTP/2 with a Content-Type of application/grpc)
// to grpcHandler, a *grpc.Server, and every other request to rest, so that
// gRPC and REST share one TLS listener. The listener must offer ALPN h2.
func Mux(grpcHandler, rest http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type")) {
			grpcHandler.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// isGRPC reports whether a Content-Type is gRPC's: application/grpc, or
// application/grpc+proto and the like.
func isGRPC(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+")
}
