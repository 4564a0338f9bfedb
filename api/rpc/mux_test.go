package rpc

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMuxRoutesByContentType(t *testing.T) {
	cases := []struct {
		name        string
		protoMajor  int
		contentType string
		want        string
	}{
		{"gRPC", 2, "application/grpc", "grpc"},
		{"gRPC with a codec", 2, "application/grpc+proto", "grpc"},
		{"gRPC, parameters and case", 2, "Application/GRPC; charset=utf-8", "grpc"},
		{"gRPC-Web is not gRPC", 2, "application/grpc-web", "rest"},
		{"JSON over HTTP/2", 2, "application/json", "rest"},
		{"gRPC content type over HTTP/1.1", 1, "application/grpc", "rest"},
		{"no content type", 2, "", "rest"},
	}
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(name)) })
	}
	h := Mux(named("grpc"), named("rest"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/rpcpb.Groups/GroupList", nil)
			r.ProtoMajor = c.protoMajor
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Body.String(); got != c.want {
				t.Errorf("served by %s, want %s", got, c.want)
			}
		})
	}
}
