// Package logclip bounds the length of the values a log record carries, so
// that a client-supplied string (a 10 KB junk asset name, a DHCP host name,
// a TFTP file name) costs a log line of bounded size however long it is.
package logclip

import (
	"fmt"
	"log/slog"
	"unicode/utf8"
)

// Max is the length in bytes kept of a string or error value.
const Max = 256

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that cuts string,
// error and Stringer values longer than Max bytes, noting the length cut.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); len(s) > Max {
			a.Value = slog.StringValue(String(s))
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
		if len(s) > Max {
			a.Value = slog.StringValue(String(s))
		}
	}
	return a
}

// String returns s cut to at most Max bytes (on a rune boundary) and a note
// of the bytes cut, or s itself when it is short enough.
func String(s string) string {
	if len(s) <= Max {
		return s
	}
	cut := Max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d more bytes)", s[:cut], len(s)-cut)
}
