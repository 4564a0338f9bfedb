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
	terms := []Term{
		MustParse("memory.bytes >= 64GiB"),
		MustParse("disk.rotational = false"),
		MustParse(`system.product in ("R640", "R650")`),
		MustParse("cpu.flags = avx512f"),
	}
	inv := server()
	b.ResetTimer()
	for b.Loop() {
		for _, t := range terms {
			t.Eval(inv)
		}
	}
}
