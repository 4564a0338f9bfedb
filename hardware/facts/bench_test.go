package facts

import "testing"

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse(`system.product in ("R640", "R650", "R740xd")`); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	var terms []Term
	for _, expr := range []string{"memory.bytes >= 64GiB", "disk.rotational = false", `system.product in ("R640", "R650")`, "cpu.flags = avx512f"} {
		term, err := Parse(expr)
		if err != nil {
			b.Fatal(err)
		}
		terms = append(terms, term)
	}
	inv := server()
	b.ResetTimer()
	for b.Loop() {
		for _, t := range terms {
			t.Eval(inv)
		}
	}
}
