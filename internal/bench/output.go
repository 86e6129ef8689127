package bench

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"kantai.dev/kantai/internal/bench/load"
	"kantai.dev/kantai/internal/bench/stats"
)

// writeJSON replaces results.json atomically.
func writeJSON(dir string, res *Results) error {
	if dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	path := filepath.Join(dir, ResultsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// writeRecords writes one run's requests as CSV, times in ms.
func writeRecords(path string, recs []load.Record) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing records: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("writing records: %w", cerr)
		}
	}()
	bw := bufio.NewWriter(f)
	w := csv.NewWriter(bw)
	_ = w.Write([]string{"origin", "start_ms", "duration_ms", "status", "node", "replica", "error", "function"})
	row := make([]string, 8)
	for _, r := range recs {
		row[0] = r.Origin
		row[1] = strconv.FormatFloat(msOf(r.Start), 'f', 3, 64)
		row[2] = strconv.FormatFloat(msOf(r.Duration), 'f', 3, 64)
		row[3] = strconv.Itoa(r.Status)
		row[4], row[5], row[6], row[7] = r.Node, r.Replica, r.Err, r.Function
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("writing records: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing records: %w", err)
	}
	return nil
}

func msOf[D ~int64](d D) float64 { return float64(d) / 1e6 }

// printCell writes one cell's table, per-origin breakdown and checks; with
// several functions, a table and breakdown per function.
func printCell(w io.Writer, cr *CellResult) {
	fmt.Fprintf(w, "\n== %s", cr.Name)
	if cr.Description != "" {
		fmt.Fprintf(w, ": %s", cr.Description)
	}
	fmt.Fprintf(w, "\n   %s after %s warm-up; ratios to %s; times in ms\n", cr.Duration, cr.Warmup, cr.Baseline)
	if len(cr.Functions) <= 1 {
		printFigures(w, cr, tableFigures(cr, ""))
	} else {
		for _, fn := range cr.Functions {
			fmt.Fprintf(w, "   function %s:\n", fn)
			printFigures(w, cr, tableFigures(cr, fn))
		}
	}
	for _, pr := range cr.Policies {
		if pr.Error != "" && pr.Summary.Count > 0 {
			fmt.Fprintf(w, "   %s: %s\n", pr.Policy, pr.Error)
		}
		for _, warning := range pr.Warnings {
			fmt.Fprintf(w, "   %s warning: %s\n", pr.Policy, warning)
		}
		if len(pr.ErrorKinds) > 0 {
			fmt.Fprintf(w, "   %s errors: %s\n", pr.Policy, kinds(pr.ErrorKinds))
		}
	}
	printPhases(w, cr)
	if len(cr.Checks) > 0 {
		fmt.Fprintln(w, "   checks:")
	}
	for _, c := range cr.Checks {
		fmt.Fprintf(w, "   %s  %s: %s\n", c.Status, c.Description, checkDetail(c))
	}
}

// figures is one table's rows: a policy's (or the oracle's) summary, its
// per-origin summaries and ratios, for all functions or one.
type figures struct {
	policies  []figureRow
	oracle    *figureRow
	oracleErr string
	origins   []string
}

type figureRow struct {
	pr         *PolicyResult
	summary    stats.Summary
	byOrigin   map[string]stats.Summary
	vsBaseline map[string]float64
	vsOracle   map[string]float64
}

// tableFigures selects the figures of one function, or of the whole run
// when fn is empty.
func tableFigures(cr *CellResult, fn string) figures {
	var f figures
	for _, pr := range cr.Policies {
		row := figureRow{pr: pr, summary: pr.Summary, byOrigin: pr.ByOrigin, vsBaseline: pr.VsBaseline, vsOracle: pr.VsOracle}
		if fn != "" {
			row = figureRow{pr: pr}
			if fr := pr.function(fn); fr != nil {
				row.summary, row.byOrigin, row.vsBaseline, row.vsOracle = fr.Summary, fr.ByOrigin, fr.VsBaseline, fr.VsOracle
			}
		}
		f.policies = append(f.policies, row)
	}
	if o := cr.Oracle; o != nil {
		f.oracleErr = o.Error
		if o.Error == "" && fn == "" {
			f.oracle = &figureRow{summary: o.Summary, byOrigin: o.ByOrigin}
		} else if of := o.function(fn); o.Error == "" && of != nil {
			f.oracle = &figureRow{summary: of.Summary, byOrigin: of.ByOrigin}
		}
	}
	f.origins = cr.Origins
	if fn != "" {
		f.origins = nil
		for _, o := range cr.Origins {
			for _, row := range f.policies {
				if _, ok := row.byOrigin[o]; ok {
					f.origins = append(f.origins, o)
					break
				}
			}
		}
	}
	return f
}

func printFigures(w io.Writer, cr *CellResult, f figures) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tgateway\tcount\tcompleted\terrors\tmean\tp50\tp90\tp95\tp99\tmax\treq/s\tp50 ×base\tcompl ×base\tp95 ×oracle\tserved\t")
	for _, row := range f.policies {
		pr := row.pr
		if pr.Error != "" && pr.Summary.Count == 0 {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\tERROR: %s\t\n", pr.Policy, pr.Gateway, pr.Error)
			continue
		}
		summaryRow(tw, pr.Policy, pr.Gateway, row.summary)
		fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t\n", ratio(row.vsBaseline, stats.MetricP50), ratio(row.vsBaseline, stats.MetricCompleted),
			ratio(row.vsOracle, stats.MetricP95), served(row.summary.ServedBy, cr.Nodes))
	}
	if o := f.oracle; o != nil {
		summaryRow(tw, "oracle", "-", o.summary)
		fmt.Fprintf(tw, "\t\t\t\t%s\t\n", served(o.summary.ServedBy, cr.Nodes))
	}
	_ = tw.Flush()
	if f.oracleErr != "" {
		fmt.Fprintf(w, "   oracle: %s\n", f.oracleErr)
	}
	if len(f.origins) > 1 {
		fmt.Fprintln(w, "   per origin:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "policy\tfrom\tcount\tcompleted\terrors\tmean\tp50\tp90\tp95\tp99\tmax\treq/s\tserved\t")
		for _, row := range f.policies {
			for _, o := range f.origins {
				s, ok := row.byOrigin[o]
				if !ok {
					continue
				}
				summaryRow(tw, row.pr.Policy, o, s)
				fmt.Fprintf(tw, "\t%s\t\n", served(s.ServedBy, cr.Nodes))
			}
		}
		_ = tw.Flush()
	}
}

func summaryRow(w io.Writer, name, col2 string, s stats.Summary) {
	tput := "-"
	if s.Throughput > 0 || name != "oracle" {
		tput = fmt.Sprintf("%.1f", s.Throughput)
	}
	fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s", name, col2,
		s.Count, s.Completed, s.Errors, s.MeanMs, s.P50Ms, s.P90Ms, s.P95Ms, s.P99Ms, s.MaxMs, tput)
}

func ratio(m map[string]float64, metric string) string {
	v, ok := m[metric]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// served renders shares in node order, then any other serving node.
func served(shares map[string]float64, nodes []string) string {
	if len(shares) == 0 {
		return "-"
	}
	var parts []string
	for _, n := range nodes {
		if v, ok := shares[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", n, 100*v))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(shares)) {
		if !slices.Contains(nodes, n) {
			name := n
			if name == "" {
				name = "unknown"
			}
			parts = append(parts, fmt.Sprintf("%s %.0f%%", name, 100*shares[n]))
		}
	}
	return strings.Join(parts, " ")
}

func kinds(m map[string]int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return m[b] - m[a] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return strings.Join(parts, "; ")
}

func checkDetail(c CheckResult) string {
	if !c.compared {
		return c.Note
	}
	d := fmt.Sprintf("%s %s = %.4g, %s = %.4g", c.Metric, c.Policy, c.Value, c.Baseline, c.BaselineValue)
	if c.Ratio != nil {
		d += fmt.Sprintf(" (ratio %.3g)", *c.Ratio)
	}
	if c.Note != "" {
		d += "; " + c.Note
	}
	return d
}

func printTotals(w io.Writer, res *Results) {
	pass, miss, skip := res.Checks()
	fmt.Fprintf(w, "\nchecks: %d PASS, %d MISS, %d SKIP\n", pass, miss, skip)
}
