package tftp_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"matchbox/tftp"
)

// A server on the standard port serving the iPXE binaries that
// os-assets/get-ipxe copied, recording every transfer.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv, err := tftp.New(tftp.Config{
		Root: "assets/tftp",
		Addr: ":69",
		OnTransfer: func(ctx context.Context, t tftp.Transfer) {
			switch {
			case t.SizeProbe():
				// EDK2 learnt the size; its real read follows.
			case t.Err != nil:
				slog.WarnContext(ctx, "boot file not sent", "client", t.RemoteAddr, "file", t.Filename, "err", t.Err)
			default:
				slog.InfoContext(ctx, "boot file sent", "client", t.RemoteAddr, "file", t.Path, "bytes", t.BytesSent)
			}
		},
	})
	if err != nil {
		slog.Error("tftp", "err", err)
		return
	}
	if err := srv.Listen(); err != nil { // bind now, to fail early or learn srv.Addr()
		slog.Error("tftp", "err", err)
		return
	}
	if err := srv.Serve(ctx); err != nil { // returns nil once ctx is cancelled
		slog.Error("tftp", "err", err)
	}
}
