package loadgen

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// SVG writes two plots of r as one SVG image: p99 latency per second over
// the run, and latency by percentile (log scale, up to 99.99%).
func (r Result) SVG(w io.Writer, title string) error {
	const W, H, pad = 480, 300, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, 2*W, H+30)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="18" font-size="14">%s</text>`, escape(title))

	// Left: p99 per second.
	var maxY float64
	for _, s := range r.Series {
		maxY = math.Max(maxY, s.P99Ms)
	}
	maxY = niceCeil(maxY)
	n := max(len(r.Series)-1, 1)
	panel(&b, 0, 30, W, H, pad, "second of the run", "p99 latency (ms)", 0, float64(n), maxY)
	var pts []string
	for i, s := range r.Series {
		x := pad + float64(i)/float64(n)*float64(W-2*pad)
		y := 30 + float64(H-pad) - s.P99Ms/maxY*float64(H-2*pad)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>`, strings.Join(pts, " "))

	// Right: latency by percentile, x = -log10(1 - q).
	if r.hist != nil && r.hist.TotalCount() > 0 {
		const maxX = 4.0 // 99.99%
		var top float64
		type pt struct{ x, y float64 }
		var ps []pt
		for _, q := range []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99} {
			v := float64(r.hist.ValueAtQuantile(q)) / 1000
			top = math.Max(top, v)
			ps = append(ps, pt{-math.Log10(1 - q/100), v})
		}
		top = niceCeil(top)
		panel(&b, W, 30, W, H, pad, "percentile", "latency (ms)", -1, -1, top)
		for _, t := range []struct {
			x     float64
			label string
		}{{0, "0"}, {math.Log10(2), "50"}, {1, "90"}, {2, "99"}, {3, "99.9"}, {4, "99.99"}} {
			x := W + pad + t.x/maxX*float64(W-2*pad)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
				x, 30+H-pad, x, 30+H-pad+4, x, 30+H-pad+16, t.label)
		}
		pts = pts[:0]
		for _, p := range ps {
			x := W + pad + math.Min(p.x, maxX)/maxX*float64(W-2*pad)
			y := 30 + float64(H-pad) - p.y/top*float64(H-2*pad)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#d62728" stroke-width="2" points="%s"/>`, strings.Join(pts, " "))
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// panel draws axes with end labels (no x labels when xMax <= xMin).
func panel(b *strings.Builder, x0, y0, w, h, pad int, xLabel, yLabel string, xMin, xMax, yMax float64) {
	left, right, top, bottom := x0+pad, x0+w-pad, y0+pad, y0+h-pad
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`, left, bottom, right, bottom)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`, left, bottom, left, top)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (left+right)/2, bottom+30, escape(xLabel))
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`, x0+14, (top+bottom)/2, x0+14, (top+bottom)/2, escape(yLabel))
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end">%g</text><text x="%d" y="%d" text-anchor="end">0</text>`, left-4, top+4, yMax, left-4, bottom+4)
	if xMax > xMin {
		fmt.Fprintf(b, `<text x="%d" y="%d">%g</text><text x="%d" y="%d" text-anchor="end">%g</text>`, left, bottom+14, xMin, right, bottom+14, xMax)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
